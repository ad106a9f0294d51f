"""The terrain means something on the trained digits space: the cell over each digit's cluster reads as that
digit, and a cell is the decode a click at its centre gives (issue #18)."""

import io

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.main import create_app
from app.settings import Settings
from app.spaces.digits_data import digit_images, image_to_digit

pytestmark = pytest.mark.slow
CELLS, CELL_PX, ZOOM = 2, 16, 4  # 16 px: the digits space's own decode size


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("terrain-digits"),
        space="digits",
        warm_umap=False,
        terrain_cells=CELLS,
        terrain_cell_px=CELL_PX,
    )
    with TestClient(create_app(settings)) as client:
        map_id = client.get("/api/maps").json()[0]["id"]
        yield client, map_id, client.get(f"/api/maps/{map_id}/points").json()["points"]


@pytest.fixture(scope="module")
def classifier():
    """Trained on the 540 digits the space never saw in training (its held-out split)."""
    from sklearn.linear_model import LogisticRegression

    images, labels, _, held_out = digit_images()
    return LogisticRegression(max_iter=3000).fit(
        np.stack([image_to_digit(images[i]) for i in held_out]), labels[held_out]
    )


def cluster_centres(points) -> list[tuple[float, float]]:
    """Per digit, the drawing nearest the mean position of that digit's drawings: what a user looking at the
    map would call the middle of the cluster (a mean can fall outside a curved cluster; an item cannot)."""
    centres = []
    for d in range(10):
        xy = np.array([(p["x"], p["y"]) for p in points if p["kind"] == "image" and p["label"].split()[1] == str(d)])
        centres.append(tuple(xy[np.argmin(np.linalg.norm(xy - xy.mean(0), axis=1))]))
    return centres


def cell_under(terrain: dict, px: float, py: float, z: int) -> tuple[tuple[int, int], tuple[int, int], tuple]:
    """(tile x, y), (cell i, j) and the cell's centre under map point (px, py), from the contract's geometry."""
    (x0, y0), s, g = terrain["origin"], terrain["size"], terrain["cells"]
    side = s / 2**z
    u, v = (px - x0) / side, (y0 + s - py) / side  # v counts from the top
    tx, ty = int(u), int(v)
    i, j = int((u - tx) * g), int((v - ty) * g)
    return (tx, ty), (i, j), (x0 + (tx + (i + 0.5) / g) * side, y0 + s - (ty + (j + 0.5) / g) * side)


def test_the_cell_over_each_digits_cluster_reads_as_that_digit(digits, classifier):
    client, map_id, points = digits
    terrain = client.get(f"/api/maps/{map_id}").json()["terrain"]
    cells, centres = [], []
    for px, py in cluster_centres(points):
        (tx, ty), (i, j), centre = cell_under(terrain, px, py, ZOOM)
        r = client.get(f"/api/maps/{map_id}/terrain/{ZOOM}/{tx}/{ty}.png?seed=0")
        assert r.status_code == 200, r.text
        tile = Image.open(io.BytesIO(r.content))
        cells.append(tile.crop((i * CELL_PX, j * CELL_PX, (i + 1) * CELL_PX, (j + 1) * CELL_PX)))
        centres.append(centre)
    predicted = classifier.predict(np.stack([image_to_digit(c) for c in cells]))
    right = int((predicted == np.arange(10)).sum())
    print(f"terrain cells over the digit clusters read right: {right}/10 ({predicted.tolist()})")
    assert right >= 9

    # Each of those cells is what a click at its centre decodes (batched decodes: equal up to float rounding).
    for cell, (cx, cy) in zip(cells, centres):
        click = client.post(f"/api/maps/{map_id}/decode", json={"x": cx, "y": cy, "seed": 0})
        single = np.asarray(Image.open(io.BytesIO(click.content)).convert("L"), np.float32)
        assert single.shape == (CELL_PX, CELL_PX)
        assert np.abs(np.asarray(cell.convert("L"), np.float32) - single).mean() <= 1.0
