import itertools

import pytest

import clmae


def test_reference_values_at_200_epochs():
    expected = {0: 1.0, 50: 0.5, 99: 0.01, 100: -0.01, 149: -0.5, 199: -1.0}
    for epoch, lam in expected.items():
        assert clmae.curriculum_factor(epoch, 200) == pytest.approx(lam, abs=1e-12)


@pytest.mark.parametrize("epochs", [1, 2, 3, 10, 11, 200])
def test_shape_of_the_schedule(epochs):
    lams = [clmae.curriculum_factor(e, epochs) for e in range(epochs)]
    assert lams[0] == 1.0
    assert all(a >= b for a, b in itertools.pairwise(lams))  # partner -> adversary, never back
    if epochs > 1:
        assert lams[-1] == pytest.approx(-1.0)
        for e in range(epochs):  # antisymmetric, except the middle epoch of an odd E, which gets +1/E
            if 2 * e + 1 != epochs:
                assert lams[e] == pytest.approx(-lams[epochs - 1 - e])
    if epochs % 2 == 1 and epochs > 1:
        assert lams[epochs // 2] == pytest.approx(1 / epochs)
    if epochs % 2 == 0:
        assert 0.0 not in lams


def test_phases_and_errors():
    assert [clmae.curriculum_phase(x) for x in (0.5, 0.0, -0.1)] == ["partner", "neutral", "adversary"]
    with pytest.raises(ValueError, match="epoch must be in"):
        clmae.curriculum_factor(200, 200)
    with pytest.raises(ValueError, match="epochs must be"):
        clmae.curriculum_factor(0, 0)
