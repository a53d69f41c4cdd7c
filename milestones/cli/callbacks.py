"""Training callbacks that print what the CLI shows while a model trains (the library itself never prints)."""

from __future__ import annotations

import sys


def progress_bar(bar: bool = True) -> object:
    """A training callback that prints one line per epoch and, if ``bar`` and stderr is a terminal, draws one tqdm bar
    over the run's steps on stderr (a log file gets the epoch lines only; the library itself never prints)."""
    from tqdm.auto import tqdm

    from ..train.callbacks import Callback

    class ProgressBar(Callback):
        bar = None

        def on_fit_start(self, state, total_steps: int) -> None:
            self.per_epoch = len(state.loader)
            if not (bar and sys.stderr.isatty()):  # no carriage-return updates in a log
                return
            self.bar = tqdm(total=total_steps, initial=state.step, unit="step", dynamic_ncols=True, leave=False)
            self.bar.set_description(self._epoch(state.step))

        def _epoch(self, step: int) -> str:
            return f"epoch {min(step // max(self.per_epoch, 1) + 1, self.bar.total // max(self.per_epoch, 1))}"

        def on_step(self, info) -> None:
            if self.bar is None:
                return
            self.bar.update(1)
            if info.step % self.per_epoch == 1 or self.per_epoch == 1:
                self.bar.set_description(self._epoch(info.step))

        def on_record(self, record: dict) -> None:
            if record["kind"] == "step" and self.bar is not None:
                self.bar.set_postfix(loss=f"{record['loss']:.3f}", refresh=False)
            elif record["kind"] == "epoch":
                line = (f"epoch {record['epoch']}: train loss {record['train_loss']:.4f}, test accuracy "
                        f"{100 * record['test_acc']:.2f}%, {record['img_per_s']:.0f} img/s")
                if self.bar is not None:
                    self.bar.write(line, file=sys.stdout)  # above the bar
                else:
                    print(line, flush=True)

        def on_fit_end(self, state) -> None:
            if self.bar is not None:
                self.bar.close()
                self.bar = None

    return ProgressBar()


def settings_line() -> object:
    """A training callback that prints, as training starts, how the run computes (precision, memory format,
    torch.compile) and why."""
    from ..train.callbacks import Callback

    class SettingsLine(Callback):
        def on_fit_start(self, state, total_steps: int) -> None:
            shown = "; ".join(f"{k.replace('_', ' ')}: {c.describe()}" for k, c in state.choices.items())
            if shown:
                print(shown, flush=True)

    return SettingsLine()
