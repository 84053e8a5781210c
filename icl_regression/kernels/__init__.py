"""Pallas kernels of the fast training path (Triton on CUDA, interpret mode elsewhere): a fused LayerNorm and a
fused LayerNorm → MLP → residual block whose hidden layer is recomputed in the backward pass."""
