"""Measured forward times of a results folder next to the FLOP model's prediction.

    python -m scripts.flop_model_table results/speed-h100 --attention-tflops 420 --gemm-tflops 760

For every ok row, the FLOP model (bench/flops.py) counts the global attention of its plan and the
rest of the model for the same frame count and image size; the prediction is global attention at
the measured rate of the attention kernel plus the rest at the measured bf16 GEMM rate (both from
the same GPU; defaults are the H100 figures in results/operators-h100 and REFERENCE.md). Block-sparse
rows that recorded the share of key blocks they kept are counted at that share, not at the preset's
floor. Writes flop_model.md and flop_model.csv into the results folder.
"""

from __future__ import annotations

from pathlib import Path

import click
import pandas as pd
from tabulate import tabulate

from bench.flops import count_flops
from bench.methods import resolve_plan
from bench.models import model_traits
from bench.store import ResultStore, read_rows


@click.command()
@click.argument("results_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--attention-tflops", default=420.0, show_default=True, help="sustained dense attention rate (cuDNN SDPA, bf16)")
@click.option("--gemm-tflops", default=760.0, show_default=True, help="sustained bf16 matrix-product rate")
def main(results_dir: Path, attention_tflops: float, gemm_tflops: float) -> None:
    rows = [r for r in read_rows(results_dir) if r["status"] == "ok"]
    traits = {name: model_traits(name) for name in {r["model_name"] for r in rows}}
    table = []
    for row in sorted(rows, key=lambda r: (r["model_name"], r["frames_used"], r["method"])):
        name = row["model_name"]
        plan = resolve_plan(row["method_name"], row["method_params"], traits[name])
        observed = (row.get("plan") or {}).get("observed")
        flops = count_flops(name, plan, row["frames_used"], tuple(row["image_size"]), observed)
        predicted = flops.seconds(attention_tflops * 1e12, gemm_tflops * 1e12)
        table.append({
            "model": row["model"], "method": row["method"], "frames": row["frames_used"],
            "key_blocks_kept": (observed or {}).get("key_blocks_kept"),
            "global_attention_tflop": flops.global_attention / 1e12, "other_tflop": flops.other / 1e12,
            "predicted_s": predicted, "measured_s": row["time_median_s"], "measured_over_predicted": row["time_median_s"] / predicted,
        })
        print(f"{row['model']} {row['method']} {row['frames_used']}: predicted {predicted:.3f} s, measured {row['time_median_s']:.3f} s", flush=True)
    frame = pd.DataFrame(table).dropna(axis=1, how="all")  # no block-sparse observations: no share column
    store = ResultStore(results_dir)
    store.write_text("flop_model.csv", frame.to_csv(index=False))
    header = (
        f"FLOP model vs measured: global attention at {attention_tflops:g} TFLOP/s, everything else at "
        f"{gemm_tflops:g} TFLOP/s.\n\n"
    )
    path = store.write_text("flop_model.md", header + tabulate(frame, headers="keys", tablefmt="github", showindex=False, floatfmt=".3f") + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
