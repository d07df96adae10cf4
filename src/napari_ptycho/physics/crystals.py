"""Random faceted crystals for Bragg CDI simulation.

A crystal is a convex polyhedron ``{x : n_i · x <= d_i}`` whose facet normals come from
the cubic {100}, {110} and {111} families. A bounded base shape (tetrahedron, cube,
octahedron or rhombic dodecahedron, with jittered facet distances) is truncated by a few
more planes from the same families, optionally rotated, scaled to fit in ``size /
oversampling`` voxels per axis and voxelised with partial-volume edges. Strained crystals
carry a smooth phase field (quadratic and cubic terms: a linear phase would only move the
Bragg peak).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np


def _family(base: tuple[int, int, int]) -> np.ndarray:
    """Unit normals of a cubic family {hkl}: all sign changes and permutations."""
    vecs = set()
    for perm in itertools.permutations(base):
        for signs in itertools.product((1, -1), repeat=3):
            vecs.add(tuple(s * p for s, p in zip(signs, perm, strict=True)))
    arr = np.array(sorted(vecs), dtype=np.float64)
    return arr / np.linalg.norm(arr, axis=1, keepdims=True)


#: Facet normal families of a cubic crystal.
FACET_FAMILIES: dict[str, np.ndarray] = {
    "100": _family((1, 0, 0)), "110": _family((1, 1, 0)), "111": _family((1, 1, 1)),
}
_ALL_NORMALS = np.concatenate(list(FACET_FAMILIES.values()))
_TETRAHEDRON = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]]) / math.sqrt(3)
_BASE_SHAPES = {"tetrahedron": _TETRAHEDRON, "cube": FACET_FAMILIES["100"],
                "octahedron": FACET_FAMILIES["111"],
                "rhombic_dodecahedron": FACET_FAMILIES["110"]}

MIN_FACETS, MAX_FACETS = 4, 20


@dataclass
class Polyhedron:
    """Half-space description ``normals @ x <= distances`` of a convex crystal."""

    normals: np.ndarray
    distances: np.ndarray
    base_shape: str = ""
    rotation: np.ndarray = field(default_factory=lambda: np.eye(3))

    def vertices(self) -> np.ndarray:
        """Vertices (V, 3), duplicates merged (several planes may meet at one vertex)."""
        from scipy.spatial import HalfspaceIntersection

        halfspaces = np.hstack([self.normals, -self.distances[:, None]])
        pts = HalfspaceIntersection(halfspaces, np.zeros(3)).intersections
        scale = float(np.abs(pts).max())
        return np.unique(np.round(pts / scale, 9), axis=0) * scale

    def facet_count(self) -> int:
        """Number of planes that bound a face of non-zero area (redundant planes ignored)."""
        verts = self.vertices()
        tol = 1e-7 * float(np.abs(verts).max())
        on_plane = np.abs(verts @ self.normals.T - self.distances[None, :]) < tol
        # vertices of a convex polytope are never collinear, so 3 on a plane span a face
        return int(np.count_nonzero(on_plane.sum(axis=0) >= 3))

    def support_function(self, directions: np.ndarray) -> np.ndarray:
        """``max_v d · v`` over the vertices, for each direction (K, 3)."""
        return (self.vertices() @ directions.T).max(axis=0)


def facet_count(crystal: Polyhedron | dict) -> int:
    """Facet count of a :class:`Polyhedron`, or of the ``info`` dict that
    :func:`make_crystal` returns (its ``normals`` and ``distances``)."""
    if isinstance(crystal, Polyhedron):
        return crystal.facet_count()
    if isinstance(crystal, dict) and {"normals", "distances"} <= crystal.keys():
        return Polyhedron(np.asarray(crystal["normals"], dtype=np.float64),
                          np.asarray(crystal["distances"], dtype=np.float64)).facet_count()
    raise ValueError("crystal must be a Polyhedron or make_crystal's info dict with "
                     "'normals' and 'distances'")


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    return Rotation.random(random_state=rng).as_matrix()


def random_polyhedron(rng: np.random.Generator, rotate: bool = True,
                      max_tries: int = 100) -> Polyhedron:
    """Random convex crystal with 4–20 facets from the {100}, {110}, {111} families.

    Parameters
    ----------
    rng : Generator
    rotate : bool
        Apply a uniformly random rotation (otherwise facets stay on the array axes).
    max_tries : int
        Redraws allowed until the facet count lands in [4, 20].
    """
    for _ in range(max_tries):
        name = str(rng.choice(list(_BASE_SHAPES)))
        base = _BASE_SHAPES[name]
        distances = rng.uniform(0.85, 1.15, len(base))
        poly = Polyhedron(base.copy(), distances, name)
        others = np.array([n for n in _ALL_NORMALS
                           if not np.any(np.all(np.isclose(base, n), axis=1))])
        n_extra = int(rng.integers(0, 9))
        if n_extra:
            extra = others[rng.choice(len(others), size=n_extra, replace=False)]
            # a plane inside the support function truncates the shape: it becomes a facet
            cut = poly.support_function(extra) * rng.uniform(0.75, 0.97, n_extra)
            poly = Polyhedron(np.vstack([base, extra]), np.concatenate([distances, cut]),
                              name)
        if rotate:
            rot = _random_rotation(rng)
            poly = Polyhedron(poly.normals @ rot.T, poly.distances, name, rot)
        if MIN_FACETS <= poly.facet_count() <= MAX_FACETS:
            return poly
    raise RuntimeError("could not draw a crystal with 4-20 facets")  # pragma: no cover


def voxelise(poly: Polyhedron, size: int, oversampling: float, supersample: int = 2
             ) -> np.ndarray:
    """Partial-volume density in [0, 1] of ``poly`` scaled to fit ``size / oversampling``
    voxels per axis (partial voxels included) and centred in a ``size³`` box."""
    verts = poly.vertices()
    lo, hi = verts.min(axis=0), verts.max(axis=0)
    # a continuous extent L touches at most ceil(L) + 1 voxels: keep that <= size/oversampling
    scale = (math.floor(size / oversampling) - 1.0) / float((hi - lo).max())
    centre = (lo + hi) / 2
    n = size * supersample
    c = (np.arange(n) + 0.5) / supersample - size / 2  # sub-voxel centres, box centre at 0
    normals = poly.normals.astype(np.float32)
    # box point c lies in the crystal frame at c / scale + centre, so the half-space
    # n·x <= d becomes n·c <= (d - n·centre) · scale; evaluated one sub-voxel plane at a
    # time to keep memory at O(size²) instead of O(size³ · supersample³)
    limits = ((poly.distances - poly.normals @ centre) * scale).astype(np.float32)
    cf = c.astype(np.float32)
    in_plane = (normals[:, 1, None, None] * cf[None, :, None]
                + normals[:, 2, None, None] * cf[None, None, :])  # (k, n, n)
    density = np.zeros((size, size, size), dtype=np.float32)
    for iz, z in enumerate(cf):
        inside = np.all(in_plane + normals[:, 0, None, None] * z <= limits[:, None, None],
                        axis=0)
        density[iz // supersample] += inside.reshape(size, supersample, size, supersample
                                                     ).sum(axis=(1, 3))
    return density / supersample ** 3


def strain_phase(density: np.ndarray, rng: np.random.Generator,
                 phase_range: tuple[float, float] = (-1.0, 1.0)) -> np.ndarray:
    """Smooth phase field: random quadratic and cubic polynomial in coordinates normalised
    to the crystal's extent, mapped linearly onto ``phase_range`` over the crystal."""
    try:
        p0, p1 = (float(v) for v in phase_range)
    except (TypeError, ValueError):
        raise ValueError(f"phase_range must be a (min, max) pair of numbers (got "
                         f"{phase_range!r})") from None
    if not (math.isfinite(p0) and math.isfinite(p1) and p0 < p1):
        raise ValueError(f"phase_range must be finite with min < max (got {phase_range})")
    support = density > 0.5
    if not support.any():
        raise ValueError("density has no voxel above 0.5; cannot place a strain field")
    idx = np.argwhere(support)
    lo, hi = idx.min(axis=0), idx.max(axis=0)
    axes = [(np.arange(n) - (a + b) / 2) / max((b - a) / 2, 1.0)
            for n, a, b in zip(density.shape, lo, hi, strict=True)]
    z, y, x = np.meshgrid(*axes, indexing="ij")
    terms = [x * x, y * y, z * z, x * y, y * z, x * z, x ** 3, y ** 3, z ** 3, x * y * z]
    coeffs = rng.normal(size=len(terms))
    field = sum(c * t for c, t in zip(coeffs, terms, strict=True))
    inside = field[support]
    lo_f, hi_f = float(inside.min()), float(inside.max())
    return (p0 + (p1 - p0) * (field - lo_f) / max(hi_f - lo_f, 1e-12)).astype(np.float32)


def make_crystal(size: int = 64, seed: int | np.random.Generator | None = 0,
                 oversampling: float = 3.0, strained: bool = True,
                 phase_range: tuple[float, float] = (-1.0, 1.0), rotate: bool = True
                 ) -> tuple[np.ndarray, dict]:
    """Complex64 crystal ``density · exp(i φ)`` in a ``size³`` box and a description.

    Parameters
    ----------
    size : int
        Box side in voxels (>= 16; 32 and 64 are the usual choices).
    seed : int or Generator, optional
    oversampling : float
        The crystal fits in ``size / oversampling`` voxels per axis (>= 2).
    strained : bool
        Add a smooth strain phase; ``False`` gives a real, positive crystal.
    phase_range : (float, float)
        Phase span (radians) of the strain field over the crystal.
    rotate : bool
        Randomly rotate the crystal lattice with respect to the array axes.

    Returns
    -------
    crystal : ndarray, complex64, (size, size, size)
    info : dict
        ``facets`` (count), ``base_shape``, ``oversampling`` (actual, per axis),
        ``normals``, ``distances`` (lists, JSON-friendly).
    """
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 16:
        raise ValueError(f"size must be an integer >= 16 (got {size!r})")
    if not (isinstance(oversampling, (int, float, np.number)) and math.isfinite(oversampling)
            and oversampling >= 2):
        raise ValueError(f"oversampling must be >= 2 (got {oversampling!r})")
    size = int(size)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    poly = random_polyhedron(rng, rotate=rotate)
    density = voxelise(poly, size, float(oversampling))
    phase = strain_phase(density, rng, phase_range) if strained else np.zeros_like(density)
    occupied = np.argwhere(density > 0)
    extent = occupied.max(axis=0) - occupied.min(axis=0) + 1
    info = {
        "facets": poly.facet_count(),
        "base_shape": poly.base_shape,
        "oversampling": [float(size / e) for e in extent],
        "normals": poly.normals.tolist(),
        "distances": poly.distances.tolist(),
    }
    return (density * np.exp(1j * phase)).astype(np.complex64), info
