"""Terrain tiles (issue #18): batching, tiles/s while the page pans, and clicks while tiles are being made.

    python bench/terrain.py --space digits               # the issue's targets (CPU: --cells 4 is quicker)
    python bench/terrain.py --space tiny-random --tiny   # toy size (bench/gpu_suite.py --tiny runs this)

In-process (MapService + Terrain + the real work queue, threads standing in for browsers), on a map built from
the space's own data (digits: the first `--items` load_digits drawings and the ten digit words; other spaces:
synthetic pictures and prompts). Figures, each against a baseline run in the same process:

1. one tile (cells^2 decodes, batched, through the queue's TILE lane) ÷ the same cells^2 single decodes in
   sequence (`Space.decode`, one request a call) — target <= 0.3 on digits;
2. tiles/s during a pan (a row of tiles at `--zoom`, `--concurrency` requests at a time, cold cache);
3. a click's latency (POST /decode's MapService.decode_at, cache miss) while `--flood` clients keep asking for
   tiles ÷ the same clicks on an idle queue — target <= 1.5x.
"""

from __future__ import annotations

import argparse
import itertools
import random
import threading
import time

from space_util import load_space, machine, make_service, pct, photo_like_png, set_threads


def build_map(service, space_name: str, items: int) -> str:
    from app.maps.service import Upload

    record, _ = service.create_map("terrain bench")
    if space_name == "digits":
        from app.maps.demo import DIGIT_WORDS, digit_pil_images

        images, labels = digit_pil_images()
        new = service.image_items(images[:items], [f"digit {int(d)} #{i}" for i, d in enumerate(labels[:items])])
        service.add_items(record.id, new + service.prompt_items(list(DIGIT_WORDS)))
    else:
        service.add_prompts(record.id, [f"thing {i}" for i in range(max(3, items // 2))])
        service.add_images(record.id, [Upload(f"im{i}.png", photo_like_png(i, 64)) for i in range(items // 2)])
    return record.id


def main(args) -> None:
    set_threads(args.threads)
    space = load_space(args.space)
    service = make_service(
        space,
        defer_prompt_images=False,
        terrain_cells=args.cells,
        terrain_batch_size=args.batch,
        max_tile_jobs=4 * (args.flood + args.concurrency),
        max_tiles_per_client=4 * args.concurrency,
        max_queued_jobs=64,
    )
    from app.maps.terrain import Terrain

    terrain = Terrain(service)
    map_id = build_map(service, args.space, args.items)
    arrays = service.store.get_arrays(map_id)
    seeds = itertools.count(1000)

    # warm-up: one small decode and one tile through every path
    terrain.tile(terrain.tile_key(map_id, 0, 0, 0, next(seeds)), "warm")

    # 1. one tile ÷ its cells decoded one by one
    tile_times, single_times = [], []
    for _ in range(args.rounds):
        key = terrain.tile_key(map_id, args.zoom, 0, 0, next(seeds))
        from app.maps.terrain import cell_centres

        requests = [service.spot_request(arrays, key.cell_spot(cx, cy)) for cx, cy in cell_centres(key)]
        t = time.perf_counter()
        for r in requests:
            service.queue.run(lambda r=r: space.decode([r]))
        single_times.append(time.perf_counter() - t)
        t = time.perf_counter()
        terrain.tile(key, "bench")
        tile_times.append(time.perf_counter() - t)

    # 2. tiles/s while the page pans: a row of tiles, a browser's few requests at a time
    pan_seed, n = next(seeds), 2**args.zoom
    todo = [(x, y) for y in range(n) for x in range(n)][: args.pan_tiles]
    lock, done = threading.Lock(), []

    def browser():
        while True:
            with lock:
                if not todo:
                    return
                x, y = todo.pop(0)
            terrain.tile(terrain.tile_key(map_id, args.zoom, x, y, pan_seed), "pan")
            done.append((x, y))

    t = time.perf_counter()
    threads = [threading.Thread(target=browser) for _ in range(args.concurrency)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    pan_seconds = time.perf_counter() - t

    # 3. clicks idle vs under a tile flood
    rng = random.Random(0)
    (x0, y0), size = (
        terrain.base_tile(service.store.get_map(map_id)).origin,
        terrain.base_tile(service.store.get_map(map_id)).size,
    )

    def click_times(count):
        out = []
        for _ in range(count):
            x, y = x0 + rng.uniform(0.2, 0.8) * size, y0 + rng.uniform(0.2, 0.8) * size
            t = time.perf_counter()
            service.decode_at(map_id, x, y, next(seeds))
            out.append(time.perf_counter() - t)
        return out

    idle = click_times(args.clicks)
    stop = threading.Event()
    from app.jobs import QueueFull

    def flooder(client):
        while not stop.is_set():
            x, y = rng.randrange(2**args.zoom), rng.randrange(2**args.zoom)
            try:
                terrain.tile(terrain.tile_key(map_id, args.zoom, x, y, next(seeds)), client)
            except QueueFull:
                time.sleep(0.01)

    flood = [threading.Thread(target=flooder, args=(f"flood{i}",)) for i in range(args.flood)]
    for th in flood:
        th.start()
    time.sleep(0.5)  # tiles are being made
    busy = click_times(args.clicks)
    stop.set()
    for th in flood:
        th.join()

    ms = lambda v: f"{1000 * v:.0f}"  # noqa: E731
    g2 = args.cells**2
    print(
        f"terrain: space={args.space} cells={args.cells} ({g2} decodes a tile) batch={args.batch} zoom={args.zoom} "
        f"items={len(arrays)} threads={args.threads} ({machine()})"
    )
    print("| measure | value | target |\n|---|---|---|")
    print(f"| one tile, batched through the TILE lane (p50 of {args.rounds}) | {ms(pct(tile_times, 0.5))} ms | |")
    print(f"| the same {g2} single decodes in sequence (p50) | {ms(pct(single_times, 0.5))} ms | |")
    print(f"| **tile ÷ single decodes** | **{pct(tile_times, 0.5) / pct(single_times, 0.5):.2f}** | ≤ 0.3 (digits) |")
    print(
        f"| tiles/s while panning ({len(done)} tiles, {args.concurrency} at a time, cold) | "
        f"{len(done) / pan_seconds:.2f} | |"
    )
    print(f"| click p50 / p95, idle queue ({args.clicks} clicks) | {ms(pct(idle, 0.5))} / {ms(pct(idle, 0.95))} ms | |")
    print(
        f"| click p50 / p95 while {args.flood} clients flood tiles | {ms(pct(busy, 0.5))} / "
        f"{ms(pct(busy, 0.95))} ms | |"
    )
    print(f"| **click under tile flood ÷ idle (p50)** | **{pct(busy, 0.5) / pct(idle, 0.5):.2f}** | ≤ 1.5 |")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--space", default="digits")
    p.add_argument("--threads", type=int, default=1, help="torch threads (0 = torch's default)")
    p.add_argument("--cells", type=int, default=8, help="cells across a tile (the server's terrain_cells)")
    p.add_argument("--batch", type=int, default=16, help="cells a batched model call (terrain_batch_size)")
    p.add_argument("--zoom", type=int, default=3)
    p.add_argument("--items", type=int, default=400, help="drawings (digits) or items on the map")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--pan-tiles", type=int, default=8)
    p.add_argument("--concurrency", type=int, default=4, help="tile requests a browser keeps in flight")
    p.add_argument("--clicks", type=int, default=8)
    p.add_argument("--flood", type=int, default=6, help="clients asking for tiles meanwhile")
    p.add_argument("--tiny", action="store_true", help="toy size: checks the script, not the figures")
    a = p.parse_args()
    if a.tiny:
        a.cells, a.batch, a.items, a.rounds, a.pan_tiles, a.concurrency, a.clicks, a.flood = 2, 4, 8, 1, 2, 2, 2, 2
    main(a)
