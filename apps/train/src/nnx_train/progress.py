"""Progress bar with images per second and ETA (tqdm), quiet on hosts other than 0; one
line per logged step instead when the bar is off (``logging.progress_bar=False``)."""

from __future__ import annotations

import sys
import time

__all__ = ["Progress"]


class Progress:
    """A tqdm bar over training steps that shows images/s, the loss and the ETA.

    Args:
      total_steps: the last step of the run.
      start_step: the step a resumed run starts from.
      batch_size: global images per step.
      enabled: False hides the bar (other hosts, tests).
      messages: print `write` lines to stderr when the bar is hidden (process 0 with
        ``logging.progress_bar=False``: warnings must not vanish with the bar), and one
        line per `update` in place of the bar.
    """

    def __init__(
        self,
        *,
        total_steps: int,
        start_step: int,
        batch_size: int,
        enabled: bool = True,
        messages: bool = False,
    ) -> None:
        self.batch_size = batch_size
        self.messages = messages
        self.total_steps = total_steps
        self._bar = None
        self._last_time = time.perf_counter()
        self._last_step = start_step
        self.images_per_second = 0.0
        if enabled:
            from tqdm.auto import tqdm

            self._bar = tqdm(
                total=total_steps,
                initial=start_step,
                desc="train",
                unit="step",
                dynamic_ncols=True,
                file=sys.stderr,
                mininterval=1.0,
            )

    def update(self, step: int, loss: float | None = None) -> float:
        """Moves the bar to ``step``; returns images/s since the previous call."""
        now = time.perf_counter()
        elapsed = max(now - self._last_time, 1e-9)
        self.images_per_second = (step - self._last_step) * self.batch_size / elapsed
        if self._bar is not None:
            self._bar.update(step - self._last_step)
            postfix = {"img/s": f"{self.images_per_second:.0f}"}
            if loss is not None:
                postfix["loss"] = f"{loss:.4f}"
            self._bar.set_postfix(postfix, refresh=False)
        elif self.messages:
            shown = "" if loss is None else f" loss {loss:.4f},"
            print(
                f"step {step}/{self.total_steps}:{shown} {self.images_per_second:.0f} img/s",
                file=sys.stderr,
                flush=True,
            )
        self._last_time, self._last_step = now, step
        return self.images_per_second

    def write(self, message: str) -> None:
        """Prints a line without breaking the bar."""
        if self._bar is not None:
            self._bar.write(message, file=sys.stderr)
        elif self.messages:
            print(message, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
