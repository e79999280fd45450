"""What reporting progress costs: a run in chunks of steps vs one compiled call.

``jaxprop train`` runs its steps in chunks (about 0.5 s each, sized as the run
goes) so that it can show a progress bar and write checkpoints between them;
``jp.train_seeds(..., progress=True)`` runs the same chunks with the bar. This
study times the same training three ways, interleaved: one ``Trainer.advance``
over every step (what ``jp.train_seeds`` does by default), the command's
chunked loop, and ``train_seeds``' (``advance_in_chunks``), each drawing its
tqdm bar (into memory). The target is an overhead under 5%.
"""

from __future__ import annotations

import io

from benchmarks._common import median, timed
from jaxprop._engine.progress import Progress
from jaxprop._engine.train import advance_in_chunks
from jaxprop._experiment import Checkpoint, build, make_config, train_chunks

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
        calls = {}

        def whole():
            return trainer.advance(trainer.init(), steps)

        def chunked():
            bar = Progress(steps, seeds, mode="bar", stream=io.StringIO())
            done = train_chunks(exp, Checkpoint(trainer.init(), 0.0), progress=bar)
            calls["chunked"] = bar.updates
            return done.state

        def train_seeds():
            with Progress(steps, seeds, mode="bar", stream=io.StringIO()) as bar:
                done = advance_in_chunks(
                    trainer,
                    trainer.init(),
                    on_chunk=lambda s, losses: bar.update_losses(s.step, losses),
                )
            calls["train_seeds"] = bar.updates
            return done

        times = timed(
            {
                "one call": whole,
                "chunks + progress": chunked,
                "train_seeds progress": train_seeds,
            },
            repeats,
        )
        t_whole, t_chunked, t_seeds = (median(times[k][1]) for k in times)
        rows.append(
            {
                "workload": name,
                "seeds": seeds,
                "steps": steps,
                "one_call_s": t_whole,
                "chunked_s": t_chunked,
                "overhead": t_chunked / t_whole - 1,
                "chunks": calls["chunked"],
                "train_seeds_s": t_seeds,
                "train_seeds_overhead": t_seeds / t_whole - 1,
                "train_seeds_chunks": calls["train_seeds"],
                "times": {k: v[1] for k, v in times.items()},
            }
        )
        print(
            f"  {name}, {seeds} seeds × {steps} steps: one call {t_whole:.3f} s, "
            f"{calls['chunked']} chunks with the bar {t_chunked:.3f} s "
            f"({100 * rows[-1]['overhead']:+.1f}%), train_seeds(progress=True) "
            f"{calls['train_seeds']} chunks {t_seeds:.3f} s "
            f"({100 * rows[-1]['train_seeds_overhead']:+.1f}%)"
        )
    return {"rows": rows}
