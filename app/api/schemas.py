"""Request and response models of the HTTP API (what /docs shows): every route's body and JSON answer."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, Field

from ..settings import Settings

# Every list a client sends has a maximum length from the settings (LATENTMAP_* variables as the server reads
# them), checked while the body is parsed: a long list is refused with one short message before any of it is
# used. The domain checks the same limits again with its own messages (and the server's own Settings object).
LIMITS = Settings.from_env()


def at_most(n: int):
    """A list of at most `n` elements, counted before any element is validated: pydantic's own max_length is
    checked after validating every element (87,000 bad pairs in a 1 MB body took seconds, on the event loop)."""

    def check(value):
        if isinstance(value, (list, tuple)) and len(value) > n:
            raise ValueError(f"at most {n} items, not {len(value)}")
        return value

    return BeforeValidator(check)


XY = Annotated[list[float], at_most(2), Field(min_length=2, max_length=2)]


class Health(BaseModel):
    status: str
    space: str
    device: str
    preview: bool = Field(False, description="the space offers fast previews (POST /decode with preview: true)")


class MapCreate(BaseModel):
    title: str = Field(..., description="Shown on the map page and in the map list")


class Projection(BaseModel):
    method: str = Field(..., description="umap, pca, or none (empty map)")
    revision: int = Field(..., description="Increases with every refit; part of the decode cache key")
    fitted_count: int = 0


class TerrainInfo(BaseModel):
    """The terrain layer's square and tiles (GET /api/maps/{id}/terrain/{z}/{x}/{y}.png)."""

    origin: list[float] = Field(..., description="[x0, y0]: the square is [x0, x0 + size] x [y0, y0 + size]")
    size: float = Field(..., description="side of the square, in map coordinates")
    cells: int = Field(..., description="cells across a tile; tile (z, x, y) is cells x cells decodes")
    cell_px: int = Field(..., description="pixels across a cell in the tile image")
    max_zoom: int = Field(..., description="deepest zoom served (404 beyond)")
    revision: int = Field(
        ..., description="changes whenever any tile of the map can change (refit, items, generated prompt images)"
    )
    previews: bool = Field(
        False, description="the space has quick previews: the page asks for each tile with preview=1 first"
    )


class MapInfo(BaseModel):
    id: str
    title: str
    space: str
    count: int
    created_at: float
    projection: Projection
    bounds: list[float] | None = Field(None, description="[xmin, ymin, xmax, ymax] of the points")
    can_edit: bool = Field(False, description="True when the request carried this map's edit key")
    refit_recommended: bool = Field(False, description="The map grew well past what its projection was fitted on")
    terrain: TerrainInfo | None = Field(
        None, description="the terrain layer (GET /api/maps/{id} and refit only; none for a map without items)"
    )


class MapCreated(MapInfo):
    edit_key: str = Field(..., description="Send as X-Edit-Key to change the map. Shown only once.")


class PromptsIn(BaseModel):
    prompts: Annotated[list[str], at_most(LIMITS.max_prompts_per_request)] = Field(
        ..., max_length=LIMITS.max_prompts_per_request
    )


class Point(BaseModel):
    id: str
    kind: str = Field(..., description="text or image")
    label: str
    x: float
    y: float
    thumbnail: bool = Field(
        False,
        description="GET /api/items/{id}/thumbnail has a picture (images, and prompts of spaces that generate one)",
    )
    pending: bool = Field(False, description="a prompt whose generated image is still being made")
    columns: dict[str, float | str] | None = Field(
        None,
        description="metadata columns the item has a value in (maps built from a folder or table; "
        "GET .../columns lists them)",
    )


class ItemsOut(BaseModel):
    items: list[Point]


class PointsOut(BaseModel):
    points: list[Point]


class VaryIn(BaseModel):
    seed: int = 0
    strength: float = Field(
        0.6,
        description="how far the variation may stray from the item: the noise put on "
        "its VAE latent, in (0, 1]; 1 = only its CLIP vector is kept",
    )


class DecodeIn(BaseModel):
    x: float
    y: float
    seed: int = 0
    variant: str | None = Field(
        None, description="decoder variant (GET /api/variants); none or 'base' = the space's own decoder"
    )
    lora_scale: float | None = Field(None, description="LoRA strength for a LoRA variant (default: its own)")
    preview: bool = Field(
        False,
        description="a fast, rougher picture (fewer steps or a tiny autoencoder) to show "
        "while the full decode runs; cached separately",
    )


class TileInfo(BaseModel):
    version: int = Field(..., description="map version the tiles belong to: pass as ?v= for immutable tile URLs")
    count: int
    origin: list[float] = Field(..., description="[x0, y0]: the tiles cut the square [x0, x0+size] x [y0, y0+size]")
    size: float
    max_zoom: int = Field(..., description="deepest tile zoom; tile (z, x, y) is column x, row y from the top")
    tile_points: int = Field(..., description="most points in one tile")
    thumbs_side: int = Field(..., description="pictures per tile are at most thumbs_side², one per cell")
    thumb_px: int = Field(..., description="side of one picture's cell in a tile atlas")
    pictures: int = Field(..., description="items that have a picture")


class CategoryCount(BaseModel):
    value: str
    count: int


class ColumnInfo(BaseModel):
    name: str
    type: str = Field(..., description="number, category or text")
    count: int = Field(..., description="points with a value in this column")
    min: float | None = Field(None, description="numbers: the smallest value")
    max: float | None = Field(None, description="numbers: the largest value")
    categories: list[CategoryCount] | None = Field(
        None, description="categories: the values with their counts, most frequent first (at most max_category_values)"
    )
    more_categories: bool | None = Field(None, description="categories: more values exist than are listed")


class ColumnsOut(BaseModel):
    columns: list[ColumnInfo]


class SpaceRow(BaseModel):
    name: str
    loaded: bool
    available: bool
    reason: str | None = Field(None, description="why the space cannot be loaded here")
    description: str
    dim: int | None = Field(None, description="loaded space only: the vector size")
    device: str | None = Field(None, description="loaded space only")
    info: dict[str, Any] | None = Field(None, description="loaded space only: what it offers (preview, ...)")


# ---------------------------------------------------------------------------------------------- exploration
class PathIn(BaseModel):
    points: Annotated[list[XY], at_most(LIMITS.max_path_points)] = Field(
        ..., max_length=LIMITS.max_path_points, description="[[x, y], ...] polyline on the map, 2 or more vertices"
    )
    steps: int = Field(8, description="number of images along the path")
    seed: int = 0


class PathFrameOut(BaseModel):
    url: str
    x: float
    y: float


class PathOut(BaseModel):
    key: str = Field(..., description="names the strip and its animations (GET /api/paths/{key}.png|gif|webp)")
    frames: list[PathFrameOut]
    strip_url: str
    gif_url: str
    webp_url: str


class NeighborOut(BaseModel):
    id: str
    kind: str
    label: str
    x: float
    y: float
    similarity: float = Field(..., description="cosine similarity in the space's own vectors")
    thumbnail_url: str | None = None


class NeighborsOut(BaseModel):
    neighbors: list[NeighborOut]


class SearchOut(BaseModel):
    x: float = Field(..., description="where the prompt would land on the map (it is not stored)")
    y: float
    neighbors: list[NeighborOut]
    similarity: list[float] = Field(..., description="every point's similarity to the prompt, in points order")


class Cluster(BaseModel):
    id: int
    size: int
    x: float
    y: float
    label: str


class ClustersOut(BaseModel):
    clusters: list[Cluster]
    assignments: list[int] = Field(..., description="each point's cluster id in points order (-1: none)")


class SelectionIn(BaseModel):
    item_ids: Annotated[list[str], at_most(LIMITS.max_selection_items)] | None = Field(
        None, max_length=LIMITS.max_selection_items, description="the selected items' ids"
    )
    indices: Annotated[list[int], at_most(LIMITS.max_selection_items)] | None = Field(
        None,
        max_length=LIMITS.max_selection_items,
        description="or their positions in points order (maps loaded from "
        "/points.bin, which carry no ids); needs `version`",
    )
    polygon: Annotated[list[XY], at_most(LIMITS.max_selection_polygon_vertices)] | None = Field(
        None,
        max_length=LIMITS.max_selection_polygon_vertices,
        description="or a lasso: [[x, y], ...] in map coordinates, "
        "every item inside it (even-odd rule); with `version`, 409 if the "
        "map changed",
    )
    version: int | None = Field(
        None, description="the X-Map-Version the indices or polygon refer to (409 if the map changed)"
    )
    format: Literal["json", "csv", "zip", "count"] = Field("json", description="count: only how many were chosen")


class SelectedItem(BaseModel):
    id: str
    kind: str
    label: str
    x: float
    y: float
    columns: dict[str, float | str] = Field(..., description="the metadata columns the item has a value in")


class SelectionOut(BaseModel):
    count: int
    items: list[SelectedItem] | None = Field(None, description="absent for format count")
    version: int | None = Field(None, description="format count of a polygon: the map version it was counted on")


# ---------------------------------------------------------------------------------------------- variants
class VariantChoice(BaseModel):
    variant: str | None = Field(
        None, description="a name from GET /api/variants; none or 'base' = the space's own decoder"
    )
    lora_scale: float | None = Field(None, description="LoRA strength (LoRA variants only; default: its own)")


Choices = Annotated[
    list[str | VariantChoice], at_most(LIMITS.max_compare_variants), Field(max_length=LIMITS.max_compare_variants)
]


class VariantsOut(BaseModel):
    space: str
    lineage: dict[str, Any] | None = Field(None, description="provenance of the space's own decoder")
    variants: list[dict[str, Any]] = Field(..., description="name, kind (lora, finetune, upscaler), lineage, ...")


class CompareIn(BaseModel):
    x: float
    y: float
    seed: int = 0
    variants: Choices = Field(
        ...,
        description='decoders to compare, e.g. ["base", "thick", {"variant": "thick", "lora_scale": 0.5}, "italic"]',
    )


class ComparedImage(BaseModel):
    variant: str
    lora_scale: float | None
    url: str = Field(..., description="/api/decodes/{key}.png")
    key: str
    cached: bool


class CompareOut(BaseModel):
    x: float
    y: float
    seed: int
    images: list[ComparedImage]


class ComparePathIn(BaseModel):
    points: Annotated[list[XY], at_most(LIMITS.max_path_points)] = Field(
        ..., max_length=LIMITS.max_path_points, description="[[x, y], ...] polyline on the map, 2 or more vertices"
    )
    steps: int = Field(6, description="images along the path, per decoder")
    seed: int = 0
    variants: Choices


class ComparedFrame(BaseModel):
    url: str
    key: str
    x: float
    y: float


class ComparedPath(BaseModel):
    variant: str
    lora_scale: float | None
    frames: list[ComparedFrame]


class ComparePathOut(BaseModel):
    paths: list[ComparedPath] = Field(..., description="paths[i].frames: the i-th decoder's images")


class UpscaleIn(BaseModel):
    upscaler: str | None = Field(None, description="an upscaler variant's name; default: the space's first")


class UpscaleOut(BaseModel):
    url: str
    key: str
    cached: bool
    upscaler: str
    source_url: str
    source_size: list[int] = Field(..., description="[width, height]")
    size: list[int] = Field(..., description="[width, height]")


class AlignedItem(BaseModel):
    label: str
    a_id: str
    b_id: str
    a: list[float] = Field(..., description="[x, y] on map A")
    b_aligned: list[float] = Field(..., description="[x, y] of the same item on map B, aligned onto map A")
    agreement: float = Field(..., description="share of its k nearest neighbours the two spaces agree on")


class AlignOut(BaseModel):
    a: str
    b: str
    matched: int
    k: int
    scale: float
    disparity: float
    mean_agreement: float
    items: list[AlignedItem]


# ---------------------------------------------------------------------------------------------- classroom
class PresentationIn(BaseModel):
    seconds: int | None = Field(None, description="ends by itself after this (capped by max_presentation_seconds)")


class PresentationStarted(BaseModel):
    code: str
    presenter_key: str = Field(..., description="send as X-Presenter-Key to update or end it. Shown only once.")
    map_id: str
    follow_url: str
    qr_url: str
    expires_at: float


class PresentationOut(BaseModel):
    code: str
    map_id: str
    followers: int
    state: dict[str, Any]
    version: int
    expires_at: float


class PresentationUpdated(BaseModel):
    version: int
    followers: int


class TourTerrain(BaseModel):
    """The terrain layer at a tour step (issue #18); the tiles decode with the step's seed."""

    on: bool = Field(..., description="the layer is shown")
    opacity: float | None = Field(None, description="0.1 to 1; none: the page's default")
    variant: str | None = Field(None, description="decoder variant of the tiles (GET /api/variants); none: base")


class TourStep(BaseModel):
    caption: str = ""
    view: Annotated[list[float], at_most(3)] | None = Field(None, max_length=3, description="[x, y, zoom]")
    at: Annotated[list[float], at_most(2)] | None = Field(None, max_length=2, description="[x, y] of a decoded point")
    seed: int | None = None
    path: Annotated[list[XY], at_most(LIMITS.max_path_points)] | None = Field(
        None, max_length=LIMITS.max_path_points, description="[[x, y], ...] a walk to decode"
    )
    terrain: TourTerrain | None = Field(None, description="the terrain layer at this step; none: left as it is")


class TourIn(BaseModel):
    title: str
    steps: Annotated[list[TourStep], at_most(LIMITS.max_tour_steps)] = Field(..., max_length=LIMITS.max_tour_steps)


class Tour(TourIn):
    id: str
    map_id: str
    created_at: float


class ToursOut(BaseModel):
    tours: list[Tour]


class QuizIn(BaseModel):
    seed: int | None = None


class GuessIn(BaseModel):
    player: str = Field(..., description="a name shown on the scoreboard")
    x: float
    y: float


class QuizAnswer(BaseModel):
    x: float
    y: float
    seed: int


class QuizGuess(BaseModel):
    player: str
    x: float
    y: float
    distance: float
    score: int


class QuizRound(BaseModel):
    id: str
    map_id: str
    image_url: str = Field(..., description="the decoded hidden point")
    revealed: bool
    players: int
    answer: QuizAnswer | None = Field(None, description="once revealed")
    ranking: list[QuizGuess] | None = Field(None, description="once revealed, best first")


class QuizStarted(QuizRound):
    presenter_key: str = Field(..., description="send as X-Presenter-Key to reveal. Shown only once.")
