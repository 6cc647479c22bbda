import numpy as np

from h2h.engines.stepper import GeneratorStepper


def _images(value):
    return np.full((8, 8, 3), value, np.uint8), np.zeros((8, 8, 3), np.uint8)


def test_window_and_previous_outputs_follow_the_sequence():
    calls = []

    def step(cond, prev):
        calls.append((cond.copy(), prev.copy()))
        return np.full((1, 3, 8, 8), len(calls) / 10, np.float32)

    stepper = GeneratorStepper(step, size=8)
    for v in (0, 127, 255):
        stepper(*_images(v))
    cond0, prev0 = calls[0]
    assert cond0.shape == (1, 18, 8, 8) and prev0.shape == (1, 6, 8, 8)
    assert np.allclose(cond0[0, [0, 6, 12]], -1.0) and not prev0.any()  # window filled with frame 0
    cond2, prev2 = calls[2]
    assert np.isclose(cond2[0, 0, 0, 0], -1.0) and np.isclose(cond2[0, 12, 0, 0], 1.0)  # oldest first
    assert np.allclose(prev2[0, :3], 0.1) and np.allclose(prev2[0, 3:], 0.2)  # outputs t-2, t-1
    stepper.reset()
    stepper(*_images(0))
    assert not calls[-1][1].any()


def test_single_frame_models_never_see_previous_outputs():
    seen = []
    stepper = GeneratorStepper(lambda c, p: (seen.append(p.any()), np.ones((1, 3, 8, 8), np.float32))[1], size=8, sequential=False)
    out = [stepper(*_images(9)) for _ in range(3)]
    assert not any(seen) and out[0].dtype == np.uint8 and (out[0] == 255).all()


def test_both_steppers_pass_a_correspondence_to_the_step_only_when_a_frame_has_one():
    import torch

    from h2h.engines.device_stepper import DeviceStepper

    corr = np.random.default_rng(0).random((1, 3, 8, 8), dtype=np.float32)
    for make in (lambda step: GeneratorStepper(step, size=8, sequential=False),
                 lambda step: DeviceStepper(lambda *inputs: torch.from_numpy(step(*(np.asarray(t) for t in inputs))), 8, False, "cpu")):
        given = []
        stepper = make(lambda cond, prev, *extra: (given.append([e.copy() for e in extra]), np.zeros((1, 3, 8, 8), np.float32))[1])
        stepper(*_images(0), corr)
        stepper(*_images(0))
        assert len(given[0]) == 1 and np.array_equal(given[0][0], corr) and given[1] == []
