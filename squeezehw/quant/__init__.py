"""Quantisation: float network IR -> the integer model, and the golden model that defines its arithmetic.

``quantize`` (post-training calibration), ``compression`` (Deep Compression codebooks and sparse
storage as a weight format), ``sparse_weights`` (the compressed weight streams the hardware decoder
reads), ``intmodel`` (the integer model and its file format), ``golden`` (integer-only NumPy
inference, bit for bit what the hardware computes), ``evaluate`` (float vs integer accuracy),
``default_model`` (the built-in MNIST model) and ``random_model`` (random integer models for tests).
"""
