"""Dynamic micro-batching (as Triton's dynamic batcher): concurrent requests share one runtime call.

Requests wait in an asyncio queue. A worker takes the first, then keeps taking until ``max_batch`` clouds are in
hand or ``max_delay_ms`` has passed since the first arrived, stacks them, and runs the model in a worker thread, off
the event loop. Each request gets its own row back; rows are computed independently, so batching does not change
a result beyond float rounding.

Requests are isolated: a cloud joins the queue only if it is exactly ``row_shape`` finite float32 (anything else is
refused to its own caller at ``submit``), and should the model still fail on a batch of several clouds, each is
run again alone, so only the cloud it fails on gets the error.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from .preprocess import check_model_input


@dataclass
class BatchStats:
    size: int
    queue_s: float  # the longest wait in the queue of any request in this batch
    run_s: float


class MicroBatcher:
    def __init__(
        self,
        predict: Callable[[np.ndarray], np.ndarray],
        max_batch: int = 8,
        max_delay_ms: float = 2.0,
        on_batch: Callable[[BatchStats], None] | None = None,
        row_shape: tuple[int, ...] | None = None,
    ):
        if max_batch < 1 or max_delay_ms < 0:
            raise ValueError("max_batch must be >= 1 and max_delay_ms >= 0")
        self.predict = predict
        self.max_batch = max_batch
        self.max_delay = max_delay_ms / 1000
        self.on_batch = on_batch
        self.row_shape = row_shape
        self.queue: asyncio.Queue[tuple[np.ndarray, asyncio.Future, float]] = asyncio.Queue()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pointkd-infer")
        self.worker: asyncio.Task | None = None

    def start(self) -> None:
        self.worker = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self.worker is not None:
            self.worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.worker
        self.executor.shutdown(wait=True)

    async def submit(self, cloud: np.ndarray) -> np.ndarray:
        """The model's output row for ``cloud``; a BadCloud (to this caller only) if it is not a model input."""
        self._check(cloud)
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((cloud, future, time.perf_counter()))
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            items = [await self.queue.get()]
            deadline = items[0][2] + self.max_delay
            while len(items) < self.max_batch:
                timeout = deadline - time.perf_counter()
                try:
                    items.append(
                        self.queue.get_nowait() if timeout <= 0 else await asyncio.wait_for(self.queue.get(), timeout)
                    )
                except (asyncio.QueueEmpty, asyncio.TimeoutError):
                    break
            start = time.perf_counter()
            outs = await self._predict_each(loop, [c for c, _, _ in items])
            if self.on_batch is not None:
                self.on_batch(BatchStats(len(items), start - min(t for _, _, t in items), time.perf_counter() - start))
            for out, (_, future, _) in zip(outs, items, strict=True):
                if future.done():
                    continue
                if isinstance(out, BaseException):
                    future.set_exception(out)
                else:
                    future.set_result(out)

    async def _predict_each(self, loop, clouds: list[np.ndarray]) -> list:
        """One runtime call for the batch; if it fails with several clouds, one call per cloud, so a failure
        reaches only the cloud that caused it. A row of the result is an output row or the exception."""
        try:
            out = await loop.run_in_executor(self.executor, self.predict, np.stack(clouds))
            if len(out) != len(clouds):
                raise RuntimeError(f"the model answered {len(out)} rows for {len(clouds)} clouds")
            return list(out)
        except Exception as err:  # the worker lives on whatever the model does
            if len(clouds) == 1:
                return [err]
        return [(await self._predict_each(loop, [c]))[0] for c in clouds]

    def _check(self, cloud: np.ndarray) -> None:
        if self.row_shape is not None:
            check_model_input(cloud, self.row_shape, "a batch row")
