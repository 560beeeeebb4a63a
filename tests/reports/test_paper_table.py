"""The paper's main table: aligned and unaligned CMU-MOSEI side by side per method, with the cited rows."""

import numpy as np
import pandas as pd

from reports import tables
from reports.references import MOSEI_ALIGNED, MOSEI_UNALIGNED


def _runs():
    rows = []
    for dataset, base in (("mosei_aligned", 0.55), ("mosei_unaligned", 0.53), ("m3ed", 0.40)):
        for variant, shift in (("carat", 0.02), ("no_shuffle", 0.0)):
            for seed in (1, 2, 3):
                value = base + shift + 0.001 * seed
                rows.append(
                    {
                        "variant": variant,
                        "dataset": dataset,
                        "setting": "default",
                        "seed": seed,
                        "phase": "repeat",
                        "status": "FINISHED",
                        "run_id": f"{variant}-{dataset}-{seed}",
                        "degenerate": "constant predictor" if (variant, seed) == ("no_shuffle", 3) else None,
                        **{f"test_{m}": value for m in ("acc", "micro_precision", "micro_recall", "micro_f1")},
                    }
                )
    rows.append({**rows[0], "phase": "tune", "test_micro_f1": 0.99})  # a tuning run is not a result
    rows.append({**rows[0], "status": "FAILED", "test_micro_f1": 0.0})
    return pd.DataFrame(rows)


def test_the_main_table_puts_aligned_and_unaligned_side_by_side_per_method():
    table = tables.paper_main_table(_runs())
    assert table.header == [
        "Method",
        "Aligned Acc",
        "Aligned P",
        "Aligned R",
        "Aligned Mi-F1",
        "Unaligned Acc",
        "Unaligned P",
        "Unaligned R",
        "Unaligned Mi-F1",
        "Seeds",
    ]
    carat, no_shuffle = table.rows
    assert carat[0].text == "carat" and no_shuffle[0].text.startswith(
        "no_shuffle ⚠ 2 of 6 runs flagged"
    )  # seed 3, on each layout
    aligned = np.mean([0.571, 0.572, 0.573])
    unaligned = np.mean([0.551, 0.552, 0.553])
    assert carat[4].text == f"{aligned:.3f} ± 0.001" and carat[8].text == f"{unaligned:.3f} ± 0.001"
    assert carat[4].bold and carat[8].bold and not no_shuffle[4].bold  # the best per column, in each group
    assert carat[-1].text == "3 / 3"  # seeds per data set; tuning and failed runs left out
    # The cited rows: the reproductions in the aligned columns, the published figures in the unaligned ones.
    methods = [row[0].text for row in table.reference_rows]
    assert methods == [f"{r.method} †" for r in MOSEI_ALIGNED + MOSEI_UNALIGNED]
    reproduced, published = table.reference_rows[0], table.reference_rows[1]
    assert reproduced[4].text == "0.565–0.568" and reproduced[8].text == ""
    assert published[4].text == "" and published[8].text == "0.544"
    assert any("not re-run here" in note for note in table.notes)
    rendered = tables.latex(table)
    assert r"\begin{tabular}{lccccccccc}" in rendered and "Unaligned Mi-F1" in tables.markdown(table)


def test_a_method_run_on_one_layout_only_shows_dashes_on_the_other():
    runs = _runs()
    runs = runs[~((runs["variant"] == "no_shuffle") & (runs["dataset"] == "mosei_unaligned"))]
    table = tables.paper_main_table(runs)
    no_shuffle = table.rows[1]
    assert [c.text for c in no_shuffle[5:9]] == ["–"] * 4 and no_shuffle[-1].text == "3 / 0"
    assert not table.rows[0][8].bold  # one row in a column is no comparison
    assert tables.paper_main_table(runs[runs["dataset"] == "m3ed"]) is None
