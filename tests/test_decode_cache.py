"""The decode cache stays within its byte budget, oldest first out, and what it evicts is decoded again bit
for bit; a deleted map's entries go with it; concurrent writers keep the accounting right."""

import threading
from pathlib import Path

from app.maps.decode_cache import DecodeCache
from tests.helpers import png_bytes


def _files(directory: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in directory.iterdir() if p.suffix in (".png", ".json")}


def test_oldest_written_is_evicted_first_within_the_budget(tmp_path):
    cache = DecodeCache(tmp_path / "c", budget_bytes=3000)
    for i in range(5):
        cache.put(f"{i}.png", bytes([i]) * 1000, map_id="m")
    assert cache.get("0.png") is None and cache.get("1.png") is None
    assert [cache.get(f"{i}.png") for i in (2, 3, 4)] == [bytes([i]) * 1000 for i in (2, 3, 4)]
    assert cache.usage() == (3, 3000) and sum(_files(tmp_path / "c").values()) == 3000
    cache.put("big.png", b"x" * 5000)  # larger than the budget: kept (it was just asked for), all else goes
    assert cache.get("big.png") == b"x" * 5000 and cache.usage() == (1, 5000)


def test_the_index_survives_a_restart_and_adopts_an_old_directory(tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    for i in range(4):
        (old / f"{i}.png").write_bytes(b"p" * 100)
    cache = DecodeCache(old, budget_bytes=250)  # a data dir from before the index: counted once, then trimmed
    assert cache.usage() == (2, 200) and len(_files(old)) == 2
    cache.put("new.png", b"n" * 100)
    cache.close()
    again = DecodeCache(old, budget_bytes=250)
    assert again.usage() == (2, 200) and again.get("new.png") == b"n" * 100


def test_delete_map_drops_only_that_maps_entries(tmp_path):
    cache = DecodeCache(tmp_path / "c", budget_bytes=10_000)
    cache.put("a1.png", b"a" * 10, map_id="mapA")
    cache.put("a2.json", b"{}", map_id="mapA")
    cache.put("b1.png", b"b" * 10, map_id="mapB")
    assert cache.delete_map("mapA") == 2
    assert cache.get("a1.png") is None and cache.get("a2.json") is None and cache.get("b1.png") == b"b" * 10
    assert cache.usage() == (1, 10) and set(_files(tmp_path / "c")) == {"b1.png"}


def test_concurrent_writers_in_two_processes_keep_the_total_right(tmp_path):
    """Two caches on one directory (as two server processes would open it), four threads each."""
    caches = [DecodeCache(tmp_path / "c", budget_bytes=20_000), DecodeCache(tmp_path / "c", budget_bytes=20_000)]

    def write(cache, worker):
        for i in range(40):
            cache.put(f"{worker}-{i % 30}.png", bytes([worker]) * (300 + 10 * worker), map_id=f"m{worker % 2}")

    threads = [threading.Thread(target=write, args=(caches[w % 2], w)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    count, total = caches[0].usage()
    on_disk = _files(tmp_path / "c")
    assert total <= 20_000 and total == sum(on_disk.values()) and count == len(on_disk)


def test_an_evicted_decode_is_made_again_bit_for_bit(make_client, tmp_path):
    client = make_client(decode_cache_bytes=1)  # every write evicts everything older
    made = client.post("/api/maps", json={"title": "tiny budget"}).json()
    map_id, key = made["id"], {"X-Edit-Key": made["edit_key"]}
    client.post(f"/api/maps/{map_id}/prompts", json={"prompts": ["a", "b", "c"]}, headers=key)
    client.post(
        f"/api/maps/{map_id}/images", files=[("files", ("a.png", png_bytes((10, 200, 10)), "image/png"))], headers=key
    )
    first = client.post(f"/api/maps/{map_id}/decode", json={"x": 0.1, "y": 0.2, "seed": 3})
    client.post(f"/api/maps/{map_id}/decode", json={"x": 0.4, "y": -0.1, "seed": 3})  # pushes the first out
    assert client.get(f"/api/decodes/{first.headers['x-decode-key']}.png").status_code == 404
    again = client.post(f"/api/maps/{map_id}/decode", json={"x": 0.1, "y": 0.2, "seed": 3})
    assert again.headers["x-decode-cache"] == "miss" and again.content == first.content
    assert again.headers["x-decode-key"] == first.headers["x-decode-key"]
    assert len(list((tmp_path / "data" / "decodes").glob("*.png"))) == 1
