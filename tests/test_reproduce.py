"""`misato reproduce table2 --preset smoke`: every stage, inpainting, scoring and the three tables, then a rerun
that redoes nothing. Marked `smoke` (it runs in CI with the rest of the suite)."""

from __future__ import annotations

import json

import pytest

from misato.cli import main


@pytest.mark.smoke
def test_reproduce_table2_smoke_writes_every_row_and_resumes(tmp_path):
    out = tmp_path / "table2"
    assert main(["reproduce", "table2", "--preset", "smoke", "--out", str(out), "--no-progress"]) == 0
    from misato.jobs.reproduce.table2 import load_preset

    preset = load_preset("smoke")
    for key in ("2a_mae", "2b_alignment", "2d_decoder"):
        lines = (out / f"table2_{key}.csv").read_text().splitlines()
        variants = {line.split(",")[0] for line in lines[1:]}
        assert variants == {row["variant"] for row in preset["rows"] if row["table"] == key}
        measured = [line for line in lines if ",measured,measured," in line and ",psnr," in line]
        assert len(measured) == len(variants) and all(line.split(",")[6] for line in measured)
    text = (out / "table2.md").read_text()
    assert "Table 2 (a) MAE" in text and "Table 2 (d) decoder" in text and "| Ours | paper | 0.150 |" in text
    summary = json.loads((out / "reproduce.json").read_text())
    assert set(summary["stages"]) == set(preset["stages"]) and set(summary["runs"]) == set(preset["runs"])
    # the three rows that name the ASUKA run share one inpainting; one MAE is fine-tuned for every alignment
    assert len(list((out / "inpaint").iterdir())) == len(preset["runs"]) < len(preset["rows"])

    def stamps() -> dict[str, int]:
        keep = ("stages", "inpaint", "results", "models")
        return {str(p): p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()
                and p.relative_to(out).parts[0] in keep and p.name != "manifest.json"}

    before = stamps()
    assert main(["reproduce", "table2", "--preset", "smoke", "--out", str(out), "--no-progress"]) == 0
    assert stamps() == before  # no stage, latent, image, model manifest or score was redone
