"""A model's forward captured as one CUDA graph, replayed for every later call of the same shape.

At a few frames a forward is a few thousand small kernels and the GPU waits on the host that
launches them; a replayed graph launches them all at once. Capture needs a forward that never
waits on the host, which the attention plans keep (their index tensors are built once per layout
and cached). The graph owns its input and output buffers: a call copies the new images into the
input and returns the outputs, which stay valid until the next call.
"""

from __future__ import annotations

from typing import Callable

import torch

Forward = Callable[[torch.Tensor], dict[str, torch.Tensor]]


class CapturedForward:
    """`forward` at the shape, dtype and device of `example`, captured as a CUDA graph."""

    def __init__(self, forward: Forward, example: torch.Tensor) -> None:
        self.input = example.clone()
        device = example.device
        torch.cuda.reset_peak_memory_stats(device)
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):  # one warm forward first: lazy set-up (library handles, plans) cannot be captured
            forward(self.input)
        torch.cuda.current_stream(device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(self.graph):
                self.output = forward(self.input)
        except RuntimeError as err:
            raise RuntimeError(
                f"the forward could not be captured as a CUDA graph ({err}); run it without graphs (model option cuda_graph_frames: 0)"
            ) from err
        # A replay allocates nothing (its tensors live in the graph's own pool), so the allocator's
        # peak over replays misses them: the forward's peak is the one seen while it was captured.
        self.peak_bytes = torch.cuda.max_memory_allocated(device)

    def matches(self, images: torch.Tensor) -> bool:
        return images.shape == self.input.shape and images.dtype == self.input.dtype and images.device == self.input.device

    def __call__(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.inference_mode():  # the buffers were made in it
            self.input.copy_(images)
        self.graph.replay()
        return self.output
