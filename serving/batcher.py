"""Dynamic micro-batching (as Triton's dynamic batcher): concurrent requests share one runtime call.

Requests wait in an asyncio queue. A worker takes the first, then keeps taking until ``max_batch`` clouds are in
hand or ``max_delay_ms`` has passed since the first arrived, stacks them, and runs the model in a worker thread, off
the event loop. Each request gets its own row back; rows are computed independently, so batching does not change
a result beyond float rounding.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np


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
    ):
        if max_batch < 1 or max_delay_ms < 0:
            raise ValueError("max_batch must be >= 1 and max_delay_ms >= 0")
        self.predict = predict
        self.max_batch = max_batch
        self.max_delay = max_delay_ms / 1000
        self.on_batch = on_batch
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
            try:
                out = await loop.run_in_executor(self.executor, self.predict, np.stack([c for c, _, _ in items]))
            except Exception as err:  # the model failed: every waiting request gets the error, the worker lives on
                for _, future, _ in items:
                    if not future.done():
                        future.set_exception(err)
                continue
            if self.on_batch is not None:
                self.on_batch(BatchStats(len(items), start - min(t for _, _, t in items), time.perf_counter() - start))
            for row, (_, future, _) in zip(out, items, strict=True):
                if not future.done():
                    future.set_result(row)
