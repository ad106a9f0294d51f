"""Request and response models of the HTTP API (what /docs shows)."""

from __future__ import annotations

from pydantic import BaseModel, Field


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


class MapCreated(MapInfo):
    edit_key: str = Field(..., description="Send as X-Edit-Key to change the map. Shown only once.")


class PromptsIn(BaseModel):
    prompts: list[str]


class Point(BaseModel):
    id: str
    kind: str = Field(..., description="text or image")
    label: str
    x: float
    y: float
    thumbnail: bool = Field(False, description="GET /api/items/{id}/thumbnail has a picture (images, and prompts "
                                               "of spaces that generate one)")
    pending: bool = Field(False, description="a prompt whose generated image is still being made")
    columns: dict[str, float | str] | None = Field(
        None, description="metadata columns the item has a value in (maps built from a folder or table; "
                          "GET .../columns lists them)")


class ItemsOut(BaseModel):
    items: list[Point]


class PointsOut(BaseModel):
    points: list[Point]


class VaryIn(BaseModel):
    seed: int = 0
    strength: float = Field(0.6, description="how far the variation may stray from the item: the noise put on "
                                             "its VAE latent, in (0, 1]; 1 = only its CLIP vector is kept")


class DecodeIn(BaseModel):
    x: float
    y: float
    seed: int = 0
    variant: str | None = Field(None, description="decoder variant (GET /api/variants); none or 'base' = the "
                                                   "space's own decoder")
    lora_scale: float | None = Field(None, description="LoRA strength for a LoRA variant (default: its own)")
    preview: bool = Field(False, description="a fast, rougher picture (fewer steps or a tiny autoencoder) to show "
                                             "while the full decode runs; cached separately")


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
        None, description="categories: the values with their counts, most frequent first (at most "
                          "max_category_values)")
    more_categories: bool | None = Field(None, description="categories: more values exist than are listed")


class ColumnsOut(BaseModel):
    columns: list[ColumnInfo]
