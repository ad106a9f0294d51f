"""Every GPU measurement the real-space issues ask for, as one prepared command for a machine with a GPU.

    python bench/gpu_suite.py --space unclip-h --out DIR   # real size, random weights; one space per call
    python bench/gpu_suite.py --space turbo-h --out DIR    # (a device call may run 10 min; each takes ~3-7)
    python bench/gpu_suite.py --tiny --out DIR   # toy size on a CPU: checks the suite itself (a test runs it)

No hub is needed: the real-size unclip-h and turbo-h architectures (configs/arch/real.json) are built with random
weights into a temp folder in the hub's layout and every component's LATENTMAP_*_ID points there, so the app
loads them through its own loader. Latency does not depend on weight values, so the timings are the real ones;
the pictures mean nothing and every table says RANDOM WEIGHTS. Runs, per space:

- bench/gpu_spaces.py --random-weights: decode / preview / img2img p50-p95, encode throughput, peak GPU memory
- bench/encode.py: ingest items/s ÷ bare encode (issue target 1: ≥ 0.85)
- bench/prompt_latency.py: one prompt over HTTP ÷ bare encode_text (target 2: ≤ 1.5)
- bench/decode.py: POST /decode ÷ bare Space.decode, and preview (target 3: ≤ 1.3)
- bench/own_models.py (turbo-h): single-file checkpoint load time, decode latency with 0, 1 and 3 LoRAs loaded
- bench/terrain.py: one terrain tile ÷ its single decodes, tiles/s, a click under a tile flood ÷ idle (#18)

Each table goes to stdout and to DIR/<bench>-<space>.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))

from app.spaces import hub, turbo, unclip  # noqa: E402
from app.spaces.vith import CONFIG_DIR  # noqa: E402

MODULES = {"unclip-h": unclip, "turbo-h": turbo}
# A toy run only has to go through every path quickly.
TINY_CONFIG = {"steps": 2, "preview": {"steps": 1}, "reference_prompts": 2, "prompt_images": {"steps": 2, "seed": 0}}
# Real size: the real decode settings; only the modality statistics (one generated picture per reference prompt,
# measured again by every server the benches start) use 4 prompts instead of 32 — they do not affect timings.
REAL_CONFIG = {"reference_prompts": 4}


def space_env(space: str, paths: dict, config_file: Path | None) -> dict:
    """LATENTMAP_<COMPONENT>_ID for every component of `space`, pointing at the local folders in `paths`."""
    env = {f"LATENTMAP_{comp.env}_ID": str(paths[key]) for key, comp in hub.components(space).items() if key in paths}
    if config_file is not None:
        env[f"LATENTMAP_{space.upper().replace('-', '_')}_CONFIG"] = str(config_file)
    return env


def run(name: str, space: str, cmd: list[str], env: dict, out: Path | None, timeout: int) -> bool:
    print(f"\n### {name} — {space} (RANDOM WEIGHTS)\n", flush=True)
    t = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(BENCH / cmd[0]), *cmd[1:]],
        cwd=BENCH.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    text = proc.stdout if proc.returncode == 0 else proc.stdout + "\n" + proc.stderr[-3000:]
    print(text.rstrip() + f"\n({time.perf_counter() - t:.0f} s, exit {proc.returncode})", flush=True)
    if out is not None:
        (out / f"{name}-{space}.md").write_text(f"RANDOM WEIGHTS ({space})\n\n{text}")
    return proc.returncode == 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--space", nargs="+", choices=list(MODULES), default=list(MODULES))
    p.add_argument("--tiny", action="store_true", help="toy-size architectures on the CPU (checks the suite)")
    p.add_argument("--out", help="folder for one markdown file per table")
    p.add_argument("--timeout", type=int, default=900, help="seconds per benchmark")
    args = p.parse_args()
    out = Path(args.out) if args.out else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    arch_name = "tiny" if args.tiny else "real"
    arch = json.loads((CONFIG_DIR / "arch" / f"{arch_name}.json").read_text())
    base_env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    if args.tiny:
        base_env["LATENTMAP_DEVICE"] = "cpu"
    small = (
        ["--requests", "3", "--prompts", "4", "--images", "2"]
        if args.tiny
        else ["--requests", "10", "--prompts", "8", "--images", "8"]
    )
    ok = True
    with tempfile.TemporaryDirectory(prefix="latentmap-gpu-suite-") as tmp:
        for space in args.space:
            config_file = Path(tmp) / f"{space}-config.json"
            size = arch["image_size"]
            config_file.write_text(
                json.dumps({**TINY_CONFIG, "height": size, "width": size} if args.tiny else REAL_CONFIG)
            )
            paths = MODULES[space].build_random(Path(tmp) / space, arch)
            env = {**base_env, **space_env(space, paths, config_file)}
            threads = ["--threads", "1" if args.tiny else "0"]
            ok &= run(
                "gpu_spaces",
                space,
                [
                    "gpu_spaces.py",
                    "--random-weights",
                    "--space",
                    space,
                    *(["--tiny", "--device", "cpu", "--n", "2"] if args.tiny else []),
                ],
                env,
                out,
                args.timeout,
            )
            ok &= run(
                "encode",
                space,
                ["encode.py", "--space", space, *threads, *(["--rounds", "2", "--batch", "4"] if args.tiny else [])],
                env,
                out,
                args.timeout,
            )
            ok &= run(
                "prompt_latency",
                space,
                [
                    "prompt_latency.py",
                    "--space",
                    space,
                    *threads,
                    "--requests",
                    "5" if args.tiny else "20",
                    "--seed-items",
                    "2" if args.tiny else "20",
                ],
                env,
                out,
                args.timeout,
            )
            ok &= run("decode", space, ["decode.py", "--space", space, *threads, *small], env, out, args.timeout)
            if space == "turbo-h":  # a user's checkpoint and LoRAs (issue 19): load time, decode with 0/1/3 LoRAs
                ok &= run(
                    "own_models",
                    space,
                    ["own_models.py", *(["--tiny", "--device", "cpu", "--n", "2"] if args.tiny else [])],
                    env,
                    out,
                    args.timeout,
                )
            ok &= run(
                "terrain",
                space,
                [
                    "terrain.py",
                    "--space",
                    space,
                    *threads,
                    *(
                        ["--tiny"]
                        if args.tiny
                        else ["--cells", "4", "--rounds", "2", "--pan-tiles", "4", "--clicks", "6", "--flood", "3"]
                    ),
                ],
                env,
                out,
                args.timeout,
            )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
