// Constants the map page's modules share, defined once. Limits that mirror a server setting say which.

export const KINDS = ["text", "image", "generated"]; // index = the kind byte of /points.bin
export const KIND_COLORS = ["#f2b84b", "#4cc3d9", "#d77be0"];
export const KIND_NAMES = { text: "Prompt", image: "Image", generated: "Generated" };
// Dark, as pictures are drawn for it: dark ink with transparency comes on a light plate (app/imaging.py for_dark_map).
export const MAP_BACKGROUND = "#14171c";
export const MAP_BACKGROUND_HIGH_CONTRAST = "#000000";

export const CLICK_SLOP_PX = 5; // a press that moves farther than this before release is a pan (or a lasso)
export const DOUBLE_CLICK_PX = 4; // the second click of a double-click lands within this of the first
export const KEY_STEP_PX = 15; // arrow keys move the keyboard cursor this far (Shift: KEY_STEP_FAST_PX)
export const KEY_STEP_FAST_PX = 60;
export const KEY_ZOOM = 1.4; // + and - zoom by this factor

export const MAX_SEED = 2147483647;
export const MAX_PATH_POINTS = 32; // the server's max_path_points
export const MAX_PATH_STEPS = 24; // the server's max_path_steps
export const MAX_TOUR_STEPS = 50; // the server's max_tour_steps
export const MAX_LORA_SCALE = 2; // the server's max_lora_scale (default)
export const MAX_COMPARE_PATH_STEPS = 12; // the server's max_compare_path_steps
export const MAX_SELECTION_POLYGON_VERTICES = 2000; // the server's max_selection_polygon_vertices
export const MAX_COORD_DECIMALS = 6; // the server keys its decode cache on 6 decimals: never send more

export const BINARY_POINTS_FROM = 20000; // maps this large load /points.bin (9 bytes a point) instead of JSON
// Up to this many points the page holds every point and the renderer draws them all; larger maps are tile-only: the
// page downloads no points, it draws and picks from the tiles on screen and asks the server for the rest (label
// match, selection by polygon, item details). `?points=tiles` forces it on a smaller map.
export const WHOLE_POINTS_MAX = 20000;
// Maps this large draw points as squares without alpha blending (measured in bench/render.py). `?render=fast|full`
// overrides it.
export const FAST_RENDER_FROM = 200000;
export const PENDING_TEXT = "picture being generated…";
