"""The positive control's words and its gate (issue 30): image results are read only when the image arm learns
sex and age on the cohort, by the declared rule."""

from __future__ import annotations

import pandas as pd
import pytest

from osteo_helpers import control


def _control(sex=(0.52, 0.45, 0.6), r=(0.03, -0.1, 0.15), model="image") -> pd.DataFrame:
    return pd.DataFrame({"target": ["sex", "age", "age"], "model": model, "metric": ["auroc", "pearson_r", "mae"],
                         "value": [sex[0], r[0], 9.8], "ci_low": [sex[1], r[1], 8.7], "ci_high": [sex[2], r[2], 10.7]})


def test_positive_control_text_reads_a_null_control_as_a_pipeline_limit():
    table = _control()
    assert "reflects this pipeline" in control.positive_control_text(table)
    table.loc[0, ["value", "ci_low"]] = [0.7, 0.62]
    assert "learns sex (its CI excludes chance) but not age" in control.positive_control_text(table)
    assert control.control_reading(table) == ("partly", "not at all")
    table.loc[1, ["value", "ci_low"]] = [0.4, 0.2]
    assert "Both are learned" in control.positive_control_text(table)


def test_both_encoders_are_named_side_by_side_and_the_pretrained_one_is_read():
    both = pd.concat([_control((0.84, 0.78, 0.9), (0.31, 0.2, 0.42)), _control(model="image_cnn")])
    text = control.positive_control_text(both)
    assert text.index("the pretrained encoder") < text.index("the CNN trained from scratch")
    assert "Both are learned" in text  # the reading is the pretrained encoder's, not the weaker baseline's


@pytest.mark.parametrize(("sex", "r", "passed"), [
    ((0.84, 0.78, 0.90), (0.31, 0.20, 0.42), True),
    ((0.74, 0.66, 0.82), (0.31, 0.20, 0.42), False),   # sex learned, but below the declared 0.75
    ((0.80, 0.49, 0.95), (0.31, 0.20, 0.42), False),   # sex's CI touches chance
    ((0.84, 0.78, 0.90), (0.12, -0.02, 0.25), False),  # age not learned
])
def test_the_gate_passes_only_when_both_targets_are_learned_as_declared(sex, r, passed):
    ok, facts = control.gate(_control(sex, r))
    assert ok is passed and "needed: at least 0.75" in facts
    assert ("passed" if passed else "failed") in control.gate_text(_control(sex, r))


def test_without_a_positive_control_nothing_about_the_image_is_interpreted():
    assert control.gate(None) == (None, "the positive control was not run, so the image results are not interpreted")
    assert "not interpreted" in control.gate_text(pd.DataFrame())
