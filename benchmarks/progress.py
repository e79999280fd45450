"""What reporting progress costs: a run in chunks of steps vs one compiled call.

``jaxprop train`` runs its steps in chunks (about 0.5 s each, sized as the run
goes) so that it can print a progress line and write checkpoints between them.
This study times the same training both ways, interleaved: one
``Trainer.advance`` over every step (what ``jp.train_seeds`` does) against the
command's chunked loop with its progress line (plain lines, written to memory).
The target is an overhead under 5%.
"""

from __future__ import annotations

import io

from benchmarks._common import median, timed
from jaxprop._experiment import Checkpoint, build, make_config, train_chunks
from jaxprop._progress import Progress

#: name: (settings of jaxprop train) per size.
WORKLOADS = {
    "xor 2-2-1, sgd, full batch": dict(
        data="xor", sizes="2,2,1", activation="sigmoid", cost="mse", lr=0.5
    ),
    "moons 2-16-16-1, adam, batch 32": dict(
        data="moons", sizes="2,16,16,1", optimizer="adam", lr=0.01, batch_size=32
    ),
}
#: (seeds, steps) per size, for each workload in order.
SIZES = {
    "full": ((4096, 20000), (64, 20000)),
    "quick": ((512, 2000), (8, 1000)),
    "smoke": ((8, 200), (2, 100)),
}


def bench_progress(size: str, repeats: int) -> dict:
    rows = []
    for (name, settings), (seeds, steps) in zip(
        WORKLOADS.items(), SIZES[size], strict=True
    ):
        exp = build(make_config(settings | dict(seeds=seeds, steps=steps)))
        trainer = exp.trainer
        calls = []

        def whole():
            return trainer.advance(trainer.init(), steps)

        def chunked():
            bar = Progress(steps, seeds, mode="lines", stream=io.StringIO(), interval=0)
            done = train_chunks(exp, Checkpoint(trainer.init(), 0.0), progress=bar)
            calls.append(bar.updates)
            return done.state

        times = timed({"one call": whole, "chunks + progress": chunked}, repeats)
        t_whole, t_chunked = (median(times[k][1]) for k in times)
        rows.append(
            {
                "workload": name,
                "seeds": seeds,
                "steps": steps,
                "one_call_s": t_whole,
                "chunked_s": t_chunked,
                "overhead": t_chunked / t_whole - 1,
                "chunks": calls[-1],
                "times": {k: v[1] for k, v in times.items()},
            }
        )
        print(
            f"  {name}, {seeds} seeds × {steps} steps: one call {t_whole:.3f} s, "
            f"{calls[-1]} chunks with progress {t_chunked:.3f} s "
            f"({100 * rows[-1]['overhead']:+.1f}%)"
        )
    return {"rows": rows}
