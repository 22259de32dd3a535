"""Coarsen the arms' visual meshes so software (llvmpipe) rendering stays fast.

robosuite's Panda draws ~135k triangles; on a CPU-only machine Mesa's llvmpipe renders that at
~15 frames/s at 96x96, while the same scene without the arm renders at ~1000. At policy image
sizes (a pixel covers about a centimetre of the workspace) that detail is invisible, so we
simplify each visual mesh by *vertex clustering*: snap vertices to a grid of ``cell_size``,
merge the vertices that share a cell (at their mean), and drop the triangles that collapse.
It is the simplest decimation there is, has no dependency, and preserves the silhouette to
within a cell. Collision meshes are left alone (MuJoCo collides with their convex hulls anyway).

The vertices are read from a compiled model, which stores them in the mesh's own inertial frame
(MuJoCo recentres every mesh: ``mesh_pos`` and ``mesh_quat`` give that frame in the asset's
coordinates); they are mapped back to asset coordinates before they replace the file, so geoms
keep their placement.
"""

from __future__ import annotations

import mujoco
import numpy as np


def cluster_vertices(
    vertices: np.ndarray, faces: np.ndarray, cell_size: float
) -> tuple[np.ndarray, np.ndarray]:
    """Vertex clustering on a grid of ``cell_size``; returns (vertices, faces) of the result."""
    cells = np.floor(vertices / cell_size).astype(np.int64)
    _, cluster, counts = np.unique(cells, axis=0, return_inverse=True, return_counts=True)
    cluster = cluster.reshape(-1)
    merged = np.zeros((len(counts), 3))
    np.add.at(merged, cluster, vertices)
    merged /= counts[:, None]

    remapped = cluster[faces]
    keep = (
        (remapped[:, 0] != remapped[:, 1])
        & (remapped[:, 1] != remapped[:, 2])
        & (remapped[:, 0] != remapped[:, 2])
    )
    remapped = remapped[keep]
    _, first = np.unique(np.sort(remapped, axis=1), axis=0, return_index=True)
    return merged, remapped[np.sort(first)]


def _to_asset_frame(vertices: np.ndarray, mesh_pos: np.ndarray, mesh_quat: np.ndarray):
    rotation = np.empty(9)
    mujoco.mju_quat2Mat(rotation, mesh_quat)
    return vertices @ rotation.reshape(3, 3).T + mesh_pos


def simplify_visual_meshes(spec: mujoco.MjSpec, cell_size: float, min_faces: int = 200) -> None:
    """Replace, in place, every mesh used only by non-colliding geoms with a clustered copy.

    Meshes with fewer than ``min_faces`` triangles are kept as they are.
    """
    collision_meshes = {
        geom.meshname for geom in spec.geoms if geom.contype != 0 or geom.conaffinity != 0
    }
    model = spec.copy().compile()  # compiling a copy keeps `spec` attachable
    for mesh in list(spec.meshes):
        if mesh.name in collision_meshes:
            continue
        index = model.mesh(mesh.name).id
        face_count = model.mesh_facenum[index]
        if face_count < min_faces:
            continue
        first_vertex = model.mesh_vertadr[index]
        vertices = model.mesh_vert[first_vertex : first_vertex + model.mesh_vertnum[index]]
        first_face = model.mesh_faceadr[index]
        faces = model.mesh_face[first_face : first_face + face_count]
        vertices = _to_asset_frame(
            vertices.astype(np.float64), model.mesh_pos[index], model.mesh_quat[index]
        )
        vertices, faces = cluster_vertices(vertices, faces, cell_size)
        if len(faces) < 4:  # too small to cluster at this cell size: keep the original
            continue
        name = mesh.name
        mesh.delete()  # a fresh element: the compiled one caches the file's normals
        spec.add_mesh(
            name=name, uservert=vertices.reshape(-1).tolist(), userface=faces.reshape(-1).tolist()
        )
