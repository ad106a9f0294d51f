"""Exploration: walks between points, neighbours in the original space, prompt search, clusters.

Everything here reads a map; nothing changes it.
"""

from __future__ import annotations

import io
import threading
import zlib
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..spaces.base import DecodeRequest, unit
from . import projection
from .decode_keys import PathFrameDecode, PathStrip, check_seed
from .index import VectorIndex, faiss_available
from .service import MapService, Rejected
from .store import MapArrays

VOCABULARY_FILE = Path(__file__).resolve().parent.parent / "data" / "vocabulary.txt"


@dataclass
class Neighbor:
    index: int
    similarity: float


@dataclass
class PathResult:
    key: str  # identifies the strip (and its GIF/WebP) in the decode cache
    frame_keys: list[str]
    points: list[tuple[float, float]]  # 2D position of each frame (for drawing the path)


def slerp(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """Spherical interpolation between unit vectors (the straight line through the sphere, not the map)."""
    dot = float(np.clip(np.dot(a, b), -1.0, 1.0))
    omega = np.arccos(dot)
    if omega < 1e-4:
        return unit((1 - t) * a + t * b)
    return ((np.sin((1 - t) * omega) * a + np.sin(t * omega) * b) / np.sin(omega)).astype(np.float32)


class Explorer:
    def __init__(self, service: MapService):
        self.service = service
        self._vocab: tuple[list[str], np.ndarray] | None = None
        # per map: (the arrays they were computed from, result); the least recently used map goes first
        self._clusters: OrderedDict[str, tuple[object, dict]] = OrderedDict()
        self._indexes: dict[int, tuple[np.ndarray, VectorIndex]] = {}

    def forget(self, map_id: str) -> None:
        """Drop what is remembered of a map (it was deleted)."""
        self._clusters.pop(map_id, None)

    @property
    def settings(self):
        return self.service.settings

    # ------------------------------------------------------------------ neighbours
    def point_vector(self, arrays: MapArrays, map_vectors: np.ndarray, x: float, y: float) -> np.ndarray:
        """The map-space vector under a 2D point: the same inverse-distance blend a decode uses."""
        idx, w = projection.blend_weights((x, y), arrays.xy, self.settings.blend_neighbors, self.settings.blend_power)
        return unit((w[:, None] * map_vectors[idx]).sum(0, keepdims=True))[0]

    def nearest(
        self,
        map_vectors: np.ndarray,
        query: np.ndarray,
        k: int,
        exclude: int | None = None,
        map_id: str | None = None,
    ) -> list[Neighbor]:
        ids, sims = self._index_for(map_vectors, map_id).nearest(query, k, exclude=exclude)
        return [Neighbor(int(i), float(s)) for i, s in zip(ids, sims)]

    def _index_for(self, map_vectors: np.ndarray, map_id: str | None = None) -> VectorIndex:
        """Exact search for ordinary maps; for maps past `neighbor_index_min_items` an approximate index: the
        one saved for the map's current version (Store.neighbor_index_path) if there is one, else built in the
        background (minutes at 1M items; then saved) while queries stay exact."""
        key = id(map_vectors)
        entry = self._indexes.get(key)
        if entry is not None and entry[0] is map_vectors:
            return entry[1]
        big = len(map_vectors) >= self.settings.neighbor_index_min_items and faiss_available()
        path = self._index_path(map_id) if big and map_id else None
        saved = None if path is None else VectorIndex.load(path, map_vectors, self.settings.neighbor_index_nprobe)
        if saved is not None:
            self._indexes = {key: (map_vectors, saved)}
            return saved
        exact = VectorIndex(map_vectors, min_items=len(map_vectors) + 1)
        self._indexes = {key: (map_vectors, exact)}  # one map's index at a time: they are large
        if big:

            def build():
                index = self.build_index(map_vectors, path)
                if key in self._indexes and self._indexes[key][0] is map_vectors:
                    self._indexes[key] = (map_vectors, index)

            threading.Thread(target=build, daemon=True, name="neighbor-index").start()
        return exact

    def _index_path(self, map_id: str) -> Path:
        return self.service.store.neighbor_index_path(map_id, self.service.store.get_map(map_id).version)

    def build_index(self, map_vectors: np.ndarray, path: Path | None = None) -> VectorIndex:
        index = VectorIndex(
            map_vectors, min_items=self.settings.neighbor_index_min_items, nprobe=self.settings.neighbor_index_nprobe
        )
        if path is not None and index.approximate:
            try:
                index.save(path)
            except (OSError, RuntimeError):  # not saved (disk full, map deleted meanwhile): built again next start
                pass
        return index

    def prepare_index(self, map_id: str) -> str | None:
        """Build and save a big map's neighbour index now (`latentmap build` does, so a server starts with it);
        returns its kind, None for a map that is searched exactly."""
        arrays, mv = self.service.item_map_vectors(map_id)
        if len(mv) < self.settings.neighbor_index_min_items or not faiss_available():
            return None
        path = self._index_path(map_id)
        index = VectorIndex.load(path, mv, self.settings.neighbor_index_nprobe) or self.build_index(mv, path)
        self._indexes = {id(mv): (mv, index)}
        return index.kind

    def neighbors(
        self,
        map_id: str,
        k: int,
        x: float | None = None,
        y: float | None = None,
        item_id: str | None = None,
        gone: Callable[[], bool] | None = None,
    ) -> list[Neighbor]:
        """Nearest items in the original space to an item or a 2D point. On maps from `expensive_read_min_items`
        the search runs through the work queue (bounded; 429 when full) rather than beside it."""
        self._check_k(k)
        if item_id is None:
            if x is None or y is None:
                raise Rejected("give either item=ID or finite x and y")
            self.service.check_point(map_id, x, y)
        if self.service.store.get_map(map_id).count >= self.settings.expensive_read_min_items:
            return self.service.queue.run(lambda: self._neighbors(map_id, k, x, y, item_id), gone)
        return self._neighbors(map_id, k, x, y, item_id)

    def _neighbors(self, map_id: str, k: int, x: float | None, y: float | None, item_id: str | None) -> list[Neighbor]:
        arrays, mv = self.service.item_map_vectors(map_id)
        if len(arrays) == 0:
            return []
        if item_id is not None:
            try:
                index = arrays.ids.index(item_id)
            except ValueError:
                raise Rejected(f"item {item_id} is not on this map") from None
            return self.nearest(mv, mv[index], k, exclude=index, map_id=map_id)
        return self.nearest(mv, self.point_vector(arrays, mv, x, y), k, map_id=map_id)

    def _check_k(self, k: int) -> None:
        if not 1 <= k <= self.settings.max_neighbors:
            raise Rejected(f"k must be between 1 and {self.settings.max_neighbors}")

    # ------------------------------------------------------------------ search
    def search(self, map_id: str, text: str, k: int, gone: Callable[[], bool] | None = None) -> dict:
        """Where a prompt would land (not stored), its neighbours, and every item's similarity to it."""
        text = text.strip()
        if not text or len(text) > self.settings.max_prompt_chars:
            raise Rejected(f"search text must be 1 to {self.settings.max_prompt_chars} characters")
        self._check_k(k)
        self.service.usable_map(map_id)

        def run() -> dict:  # one job: the encode, the placement and the similarities of the whole map
            record = self.service.store.get_map(map_id)
            arrays, mv = self.service.item_map_vectors(map_id)
            vector = self.service.space.encode_text([text])
            query = self.service.space.map_vectors(vector, ["text"])
            if len(arrays) == 0:
                return {"x": 0.0, "y": 0.0, "neighbors": [], "similarity": []}
            xy = projection.place(
                query,
                mv,
                arrays.xy,
                record.projection,
                self.settings.place_neighbors,
                self.settings.place_refine_epochs,
            )[0]
            sims = np.nan_to_num(mv @ query[0])
            return {
                "x": float(xy[0]),
                "y": float(xy[1]),
                "neighbors": self.nearest(mv, query[0], k, map_id=map_id),
                "similarity": np.round(sims, 4).tolist(),
            }

        return self.service.queue.run(run, gone)

    # ------------------------------------------------------------------ paths
    def path(
        self,
        map_id: str,
        points: Sequence[Sequence[float]],
        steps: int,
        seed: int,
        gone: Callable[[], bool] | None = None,
    ) -> PathResult:
        """`steps` images along a polyline: endpoints blended as clicks are, slerp between them."""
        frames = path_frames(self.service, map_id, points, steps, seed, self.settings.max_path_steps)
        frame_keys = []
        for frame in frames:
            key = frame.key.digest()
            self.service.decode_cached(key, frame.request, gone, map_id=map_id)
            frame_keys.append(key)
        path_key = PathStrip(tuple(frame_keys)).digest()
        self.service.store.store_decode_meta(path_key, {"frames": frame_keys}, map_id=map_id)
        return PathResult(path_key, frame_keys, [f.point for f in frames])

    def path_media(self, path_key: str, fmt: str) -> bytes:
        """The frames of a decoded path as one strip (png) or an animation (gif, webp)."""
        meta = self.service.store.decode_meta(path_key)
        frames = [
            Image.open(io.BytesIO(self.service.store.cached_decode(k) or b"")).convert("RGB") for k in meta["frames"]
        ]
        buf = io.BytesIO()
        if fmt == "png":
            w, h = frames[0].size
            strip = Image.new("RGB", (w * len(frames), h))
            for i, f in enumerate(frames):
                strip.paste(f, (i * w, 0))
            strip.save(buf, format="PNG")
        else:
            frames[0].save(buf, format=fmt.upper(), save_all=True, append_images=frames[1:], duration=250, loop=0)
        return buf.getvalue()

    # ------------------------------------------------------------------ clusters
    def clusters(self, map_id: str, gone: Callable[[], bool] | None = None) -> dict:
        """HDBSCAN on the 2D positions (what the user sees), labelled from prompts or a small vocabulary.
        Computed in the work queue (seconds on a large map: bounded, 429 when full), once per map version:
        concurrent requests find the first one's result; `cluster_cache_maps` maps are remembered."""
        arrays = self.service.store.get_arrays(map_id)
        cached = self._cached_clusters(map_id, arrays)
        if cached is not None:
            return cached
        return self.service.queue.run(lambda: self._compute_clusters(map_id, gone), gone)

    def _cached_clusters(self, map_id: str, arrays) -> dict | None:
        cached = self._clusters.get(map_id)
        if cached is None or cached[0] is not arrays:
            return None
        self._clusters.move_to_end(map_id)
        return cached[1]

    def _compute_clusters(self, map_id: str, gone) -> dict:
        arrays, mv = self.service.item_map_vectors(map_id)
        cached = self._cached_clusters(map_id, arrays)  # another request computed it while this one waited
        if cached is not None:
            return cached
        result = {"clusters": [], "assignments": [-1] * len(arrays)}
        if len(arrays) >= 5:
            labels = cluster_positions(arrays.xy, self.settings.cluster_fit_sample)
            result["assignments"] = labels.tolist()
            is_text = np.fromiter((k == "text" for k in arrays.kinds), dtype=bool, count=len(arrays))
            order = np.argsort(labels, kind="stable")  # each cluster's members, in points order, in one pass
            ids, starts = np.unique(labels[order], return_index=True)
            for c, members in zip(ids, np.split(order, starts[1:]), strict=True):
                if c == -1:
                    continue
                centre = unit(_mean_rows(mv, members))[0]
                result["clusters"].append(
                    {
                        "id": int(c),
                        "size": int(len(members)),
                        "x": float(arrays.xy[members, 0].mean()),
                        "y": float(arrays.xy[members, 1].mean()),
                        "label": self._cluster_label(arrays, mv, members[is_text[members]], centre),
                    }
                )
        self._clusters[map_id] = (arrays, result)
        self._clusters.move_to_end(map_id)
        while len(self._clusters) > self.settings.cluster_cache_maps:
            self._clusters.popitem(last=False)
        return result

    def _cluster_label(self, arrays: MapArrays, mv: np.ndarray, texts: np.ndarray, centre: np.ndarray) -> str:
        if len(texts):  # the prompt nearest the cluster's centre names it (the first of equals)
            scores = np.concatenate(
                [np.asarray(mv[texts[i : i + _ROWS]], np.float32) @ centre for i in range(0, len(texts), _ROWS)]
            )
            return arrays.labels[int(texts[int(np.argmax(scores))])][:40]
        words, word_vectors = self._vocabulary()
        return words[int(np.argmax(word_vectors @ centre))]

    def _vocabulary(self) -> tuple[list[str], np.ndarray]:
        """The cluster-label vocabulary's vectors (encoded once; called inside a work-queue job)."""
        if self._vocab is None:
            words = [
                w.strip()
                for w in VOCABULARY_FILE.read_text(encoding="utf-8").splitlines()
                if w.strip() and not w.startswith("#")
            ]
            space = self.service.space
            self._vocab = (words, space.map_vectors(space.encode_text(words), ["text"] * len(words)))
        return self._vocab


_ROWS = 16_384  # vector rows read at once for a cluster's centre and its prompts (memory stays bounded)


def _mean_rows(mv: np.ndarray, members: np.ndarray) -> np.ndarray:
    """The mean of rows `members` of mv, shape (1, dim), reading at most _ROWS rows at a time."""
    if len(members) <= _ROWS:
        return mv[members].mean(0, keepdims=True)
    total = np.zeros((1, mv.shape[1]), np.float64)
    for i in range(0, len(members), _ROWS):
        total += mv[members[i : i + _ROWS]].sum(0, keepdims=True, dtype=np.float64)
    return (total / len(members)).astype(np.float32)


def cluster_positions(xy: np.ndarray, fit_sample: int) -> np.ndarray:
    """HDBSCAN cluster id of every 2D position (-1: noise). A cluster holds at least 1/60 of the points.

    Above `fit_sample` points (HDBSCAN is far from linear: a 1M map did not finish in 14 minutes), HDBSCAN fits a
    sample of that many points with the same minimum share, and every other point takes the id of its nearest
    sampled point (noise where that one is noise). The sample's seed comes from the positions themselves, so the
    same map version always gets the same clusters."""
    from sklearn.cluster import HDBSCAN

    n = len(xy)
    if n <= fit_sample:
        min_size = max(3, n // 60)
        return HDBSCAN(min_cluster_size=min_size, min_samples=min(5, min_size), copy=True).fit_predict(xy)
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(zlib.crc32(np.ascontiguousarray(xy).tobytes()))
    pick = np.sort(rng.choice(n, fit_sample, replace=False))
    sample = np.asarray(xy[pick], np.float64)
    min_size = max(3, fit_sample // 60)
    sample_labels = HDBSCAN(min_cluster_size=min_size, min_samples=min(5, min_size), copy=False).fit_predict(sample)
    _, nearest = cKDTree(sample).query(xy, k=1, workers=-1)
    labels = sample_labels[nearest]
    labels[pick] = sample_labels  # a sampled point's nearest is itself unless two share a position
    return labels


def match_labels(labels: Sequence[str], query: str) -> np.ndarray:
    """Which labels contain `query` (case-insensitive, surrounding spaces ignored), as one bool per label."""
    needle = query.strip().casefold()
    return np.fromiter((needle in label.casefold() for label in labels), dtype=bool, count=len(labels))


@dataclass
class PathFrame:
    request: DecodeRequest
    point: tuple[float, float]  # where on the map this frame lies
    key: PathFrameDecode  # its decode-cache key (a variant sets its name and strength there)


def path_frames(
    service: MapService, map_id: str, points: Sequence[Sequence[float]], steps: int, seed: int, max_steps: int
) -> list[PathFrame]:
    """Checked path geometry: `steps` frames evenly spaced along the polyline by length, each a slerp between
    the blended vectors at the segment's ends."""
    settings = service.settings
    record = service.usable_map(map_id)
    if not 2 <= len(points) <= settings.max_path_points:
        raise Rejected(f"a path needs 2 to {settings.max_path_points} points")
    if not 2 <= steps <= max_steps:
        raise Rejected(f"steps must be between 2 and {max_steps}")
    check_seed(seed, settings.max_seed)
    if not all(isinstance(p, (list, tuple)) and len(p) == 2 for p in points):
        raise Rejected("points must be a list of [x, y] pairs of finite numbers")
    for x, y in points:
        service.check_point(map_id, x, y)
    pts = np.asarray(points, dtype=np.float64)
    pts = np.round(pts, 6)
    arrays = service.store.get_arrays(map_id)
    if len(arrays) == 0:
        raise Rejected("this map has no items yet: add prompts or images first")
    anchors = [service.blend_request(arrays, float(x), float(y), seed) for x, y in pts]
    seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
    total, cum = float(seg.sum()), np.concatenate([[0.0], np.cumsum(seg)])
    state, vertices = service.decode_state(record), tuple((float(x), float(y)) for x, y in pts)
    decoder = service.space.decoder_identity(None)
    frames = []
    for i in range(steps):
        s = total * i / (steps - 1)
        j = int(np.clip(np.searchsorted(cum, s, side="right") - 1, 0, len(seg) - 1))
        t = 0.0 if seg[j] == 0 else float((s - cum[j]) / seg[j])
        where = (1 - t) * pts[j] + t * pts[j + 1]
        frames.append(
            PathFrame(
                _interpolate(anchors[j], anchors[j + 1], t, seed),
                (float(where[0]), float(where[1])),
                PathFrameDecode(state, vertices, steps, seed, i, decoder=decoder),
            )
        )
    return frames


def _interpolate(a: DecodeRequest, b: DecodeRequest, t: float, seed: int) -> DecodeRequest:
    na, nb = float(np.linalg.norm(a.vector)), float(np.linalg.norm(b.vector))
    direction = slerp(unit(a.vector[None])[0], unit(b.vector[None])[0], t)
    latent, strength = None, 1.0
    if a.latent is not None and b.latent is not None:
        latent = ((1 - t) * a.latent + t * b.latent).astype(np.float32)
        strength = (1 - t) * a.strength + t * b.strength
    return DecodeRequest(
        vector=(direction * ((1 - t) * na + t * nb)).astype(np.float32), seed=seed, latent=latent, strength=strength
    )
