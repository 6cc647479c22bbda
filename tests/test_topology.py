import numpy as np

from h2h.models.geometry.topology import load_topology


def test_topology_has_the_tessellation_triangles():
    topo = load_topology()
    assert topo.triangles.shape == (852, 3)
    assert topo.triangles.min() >= 0 and topo.triangles.max() < 468
    assert len({tuple(sorted(t)) for t in topo.triangles.tolist()}) == 852


def test_index_sets_are_ordered_loops_of_the_right_size():
    topo = load_topology()
    edges = {tuple(sorted(e)) for t in topo.triangles.tolist() for e in ((t[0], t[1]), (t[1], t[2]), (t[2], t[0]))}
    for loop, size in ((topo.right_eye, 16), (topo.left_eye, 16), (topo.lips_outer, 20), (topo.lips_inner, 20)):
        assert len(loop) == size
        consecutive = zip(loop, np.roll(loop, -1))
        assert all(tuple(sorted((int(a), int(b)))) in edges for a, b in consecutive)
    assert topo.right_iris.tolist() == [468, 469, 470, 471, 472]
    assert topo.left_iris.tolist() == [473, 474, 475, 476, 477]


def test_rigid_anchors_avoid_eyes_and_mouth():
    topo = load_topology()
    moving = set(topo.right_eye) | set(topo.left_eye) | set(topo.mouth)
    assert len(topo.rigid_anchors) >= 20
    assert not moving & set(topo.rigid_anchors.tolist())
