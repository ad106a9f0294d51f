"""The default Digits map means something: prompts land among their images, decoded clusters and text
points show the right digit, seeds vary the drawing, and the exploration tools agree (trained weights)."""

import io

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.main import create_app
from app.maps.demo import DIGIT_WORDS
from app.settings import DIGITS_SPACE_DIR, Settings
from app.spaces.digits_data import digit_images, image_to_digit

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """The app on the digits space, first start: it builds the Digits map itself."""
    assert (DIGITS_SPACE_DIR / "space.json").is_file(), "trained digits weights must ship in the package"
    data_dir = tmp_path_factory.mktemp("digits")
    settings = Settings(data_dir=data_dir, space="digits", warm_umap=False)
    with TestClient(create_app(settings)) as client:
        maps = client.get("/api/maps").json()
        assert [m["title"] for m in maps] == ["Digits"]
        map_id = maps[0]["id"]
        points = client.get(f"/api/maps/{map_id}/points").json()["points"]
        client.data_dir = data_dir
        yield client, map_id, points


@pytest.fixture(scope="module")
def classifier():
    from sklearn.linear_model import LogisticRegression

    images, labels, train_idx, _ = digit_images()
    return LogisticRegression(max_iter=2000).fit(
        np.stack([image_to_digit(images[i]) for i in train_idx]), labels[train_idx]
    )


def cluster_centres(points, k: int = 10):
    """Per digit, where a user would click for "the middle of that digit's images": a spot deep inside the
    digit's island, the image whose k nearest images on the map are most often of its own digit (the medoid of
    those images breaks ties). Not the 2D centroid, nor the plain medoid: UMAP draws some digits as curved or
    split islands beside similar digits (ones beside eights), and on other layouts those points fell among
    another digit's images, where the click rightly decodes that other digit."""
    images = [p for p in points if p["kind"] == "image"]
    xy = np.array([(p["x"], p["y"]) for p in images])
    digit = np.array([int(p["label"].split()[1]) for p in images])
    dist = np.linalg.norm(xy[:, None] - xy[None], axis=2)
    nearest = np.argsort(dist, axis=1)[:, 1 : k + 1]
    purity = (digit[nearest] == digit[:, None]).mean(1)
    centres = []
    for d in range(10):
        own = np.flatnonzero(digit == d)
        purest = own[purity[own] == purity[own].max()]
        centres.append(xy[purest[np.argmin(dist[np.ix_(purest, own)].sum(1))]])
    return np.array(centres)


def word_position(points, word):
    return next(np.array([p["x"], p["y"]]) for p in points if p["label"] == word)


def decode(client, map_id, xy, seed=0):
    r = client.post(f"/api/maps/{map_id}/decode", json={"x": float(xy[0]), "y": float(xy[1]), "seed": seed})
    assert r.status_code == 200, r.text
    return r.content


def predict(classifier, png_list):
    return classifier.predict(np.stack([image_to_digit(Image.open(io.BytesIO(p))) for p in png_list]))


def test_default_map_holds_every_digit_and_the_prompts(digits):
    client, map_id, points = digits
    assert sum(p["kind"] == "image" for p in points) == 1797
    labels = {p["label"] for p in points if p["kind"] == "text"}
    assert set(DIGIT_WORDS) <= labels
    assert client.get(f"/api/maps/{map_id}").json()["projection"]["method"] == "umap"


def test_prompts_land_nearest_their_digits_images(digits):
    _, _, points = digits
    c = cluster_centres(points)
    right = sum(
        int(np.argmin(np.linalg.norm(c - word_position(points, w), axis=1)) == d) for d, w in enumerate(DIGIT_WORDS)
    )
    print(f"prompt nearest its own digit's cluster centre: {right}/10")
    assert right >= 8


def test_decoded_cluster_centres_show_their_digit(digits, classifier):
    """Clicking the middle of a digit's images decodes that digit."""
    client, map_id, points = digits
    pred = predict(classifier, [decode(client, map_id, xy) for xy in cluster_centres(points)])
    right = int((pred == np.arange(10)).sum())
    print(f"decoded image-cluster centres classified right: {right}/10 ({pred.tolist()})")
    assert right >= 8


def test_decoded_text_points_show_their_digit(digits, classifier):
    client, map_id, points = digits
    pred = predict(classifier, [decode(client, map_id, word_position(points, w)) for w in DIGIT_WORDS])
    right = int((pred == np.arange(10)).sum())
    print(f"decoded text points classified right: {right}/10 ({pred.tolist()})")
    assert right >= 7


def test_same_seed_same_bytes_other_seed_same_digit(digits, classifier):
    client, map_id, points = digits
    c = cluster_centres(points)
    first = [decode(client, map_id, xy, seed=0) for xy in c]
    assert [decode(client, map_id, xy, seed=0) for xy in c] == first
    other = [decode(client, map_id, xy, seed=12345) for xy in c]
    assert all(a != b for a, b in zip(first, other))
    same_digit = int((predict(classifier, first) == predict(classifier, other)).sum())
    print(f"another seed keeps the digit: {same_digit}/10")
    assert same_digit >= 7


def test_varying_an_image_keeps_its_digit_and_changes_the_drawing(digits, classifier):
    """Image-to-image from the panel: a variation of a drawn digit is another drawing of the same digit; the
    lower the strength, the closer to the original."""
    client, map_id, points = digits
    firsts = [next(p for p in points if p["kind"] == "image" and p["label"].split()[1] == str(d)) for d in range(10)]
    url = lambda p: f"/api/maps/{map_id}/items/{p['id']}/vary"  # noqa: E731
    varied = [client.post(url(p), json={"seed": 3, "strength": 0.6}) for p in firsts]
    assert all(r.status_code == 200 and r.headers["content-type"] == "image/png" for r in varied)
    assert client.post(url(firsts[0]), json={"seed": 3, "strength": 0.6}).content == varied[0].content
    assert client.post(url(firsts[0]), json={"seed": 4, "strength": 0.6}).content != varied[0].content
    kept = int((predict(classifier, [r.content for r in varied]) == np.arange(10)).sum())
    print(f"variations keep their digit: {kept}/10")
    assert kept >= 8

    def distance(png, item):  # mean absolute pixel difference to the item's own thumbnail
        a = image_to_digit(Image.open(io.BytesIO(png)))
        b = image_to_digit(Image.open(io.BytesIO(client.get(f"/api/items/{item['id']}/thumbnail").content)))
        return float(np.abs(a - b).mean())

    near = np.mean([distance(client.post(url(p), json={"seed": 3, "strength": 0.3}).content, p) for p in firsts])
    far = np.mean([distance(client.post(url(p), json={"seed": 3, "strength": 1.0}).content, p) for p in firsts])
    print(f"distance to the original: strength 0.3 {near:.3f}, strength 1.0 {far:.3f}")
    assert near < far
    for bad in ({"strength": 0}, {"strength": 1.5}, {"seed": -1}):
        assert client.post(url(firsts[0]), json=bad).status_code == 422
    assert client.post(f"/api/maps/{map_id}/items/notAnItem123/vary", json={}).status_code == 404


def test_path_from_one_to_seven(digits, classifier):
    """A user finds a one among the ones (clicks in the ones' island until a one shows: this space draws some
    ones thick enough that the 8x8 classifier reads an eight), then draws a path from there to the middle of the
    sevens: the walk starts on that one and ends on a seven (what lies between may be anything)."""
    client, map_id, points = digits
    sevens = cluster_centres(points)[7]
    ones = np.array([(p["x"], p["y"]) for p in points if p["kind"] == "image" and p["label"].startswith("digit 1 ")])
    central = ones[np.argsort(np.linalg.norm(ones[:, None] - ones[None], axis=2).sum(1))]  # most central first
    start = next((xy for xy in central[:40] if predict(classifier, [decode(client, map_id, xy)])[0] == 1), None)
    assert start is not None, "no spot among the 40 most central ones decodes as a one"
    out = client.post(
        f"/api/maps/{map_id}/path", json={"points": [start.tolist(), sevens.tolist()], "steps": 6, "seed": 0}
    ).json()
    pred = predict(classifier, [client.get(f["url"]).content for f in out["frames"]])
    print(f"path one → seven classified: {pred.tolist()}")
    assert pred[0] == 1 and pred[-1] == 7


def test_neighbours_of_a_three_are_mostly_threes(digits):
    client, map_id, points = digits
    threes = [p for p in points if p["kind"] == "image" and p["label"].startswith("digit 3 ")]
    shares = []
    for p in threes[:10]:
        found = client.get(f"/api/maps/{map_id}/neighbors", params={"item": p["id"], "k": 10}).json()["neighbors"]
        shares.append(
            np.mean(
                [
                    n["label"].startswith("digit 3 ") or n["label"] in ("three", "a handwritten three", "the digit 3")
                    for n in found
                ]
            )
        )
    print(f"share of threes among the neighbours of threes: {np.mean(shares):.2f}")
    assert np.mean(shares) >= 0.7


def test_clusters_are_named_after_digits(digits):
    client, map_id, _ = digits
    clusters = client.get(f"/api/maps/{map_id}/clusters").json()["clusters"]
    words = set(DIGIT_WORDS) | {f"a handwritten {w}" for w in DIGIT_WORDS} | {f"the digit {d}" for d in range(10)}
    named = [c for c in clusters if c["label"] in words]
    print(f"clusters: {len(clusters)}, named after a digit: {len(named)}")
    assert len(clusters) >= 5 and len(named) >= 0.8 * len(clusters)


def test_the_digits_map_ships_a_five_step_tour(digits):
    client, map_id, _ = digits
    tours = client.get(f"/api/maps/{map_id}/tours").json()["tours"]
    assert len(tours) == 1 and len(tours[0]["steps"]) == 5
    assert tours[0]["steps"][2]["path"] is not None


def test_the_owner_finds_the_demo_maps_edit_link(digits):
    client, map_id, _ = digits
    link = (client.data_dir / "digits-edit-link.txt").read_text().strip()
    assert link.startswith(f"/m/{map_id}#key=")
    key = {"X-Edit-Key": link.split("#key=")[1]}
    assert client.get(f"/api/maps/{map_id}", headers=key).json()["can_edit"] is True
    # the prompts are drawn on top of the images: they come last
    points = client.get(f"/api/maps/{map_id}/points").json()["points"]
    assert all(p["kind"] == "text" for p in points[-10:])
