"""The integer model: what the quantizer produces, the golden model runs and the hardware implements.

Every integer the hardware needs (weights, biases, requantisation multipliers and shifts) lives
here, together with the float scales that explain them.  ``save``/``load`` use one ``.npz`` file
whose ``__meta__`` entry is a JSON description (format name, version, layer list, content hash),
so the file is self-describing and a load of a damaged file fails loudly.  See docs/numerics.md.
"""
from __future__ import annotations

import hashlib
import json
import os
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..frontend.ir import bits_for_signed, bits_for_unsigned

FORMAT = "squeezehw-intmodel"
VERSION = 2             # 2: optional shared-weight codebooks per conv (version 1 files still load)
READS_VERSIONS = (1, 2)
MULT_BITS = 16          # requantisation multipliers are unsigned, < 2**MULT_BITS
MAX_SHIFT = 48          # requantisation right shifts are in [1, MAX_SHIFT]
ACT_BITS = 8            # activations: uint8 after ReLU, int8 without


class ModelFileError(UserError, ValueError):
    """An integer-model file that is missing, corrupt, truncated or of another format/version."""


def requant_params(real_multiplier: float) -> tuple[int, int]:
    """(mult, shift) with mult * 2**-shift ~= real_multiplier, mult normalised to 16 bits."""
    if not real_multiplier > 0:
        raise ValueError(f"requantisation multiplier must be positive, got {real_multiplier}")
    shift = MULT_BITS - 1 - int(np.floor(np.log2(real_multiplier)))
    shift = min(max(shift, 1), MAX_SHIFT)
    mult = int(round(real_multiplier * 2.0 ** shift))
    if mult >= 1 << MULT_BITS:      # rounding carried into the next power of two
        mult //= 2
        shift -= 1
    if shift < 1 or mult >= 1 << MULT_BITS:
        raise ValueError(f"requantisation multiplier {real_multiplier:g} is too large "
                         f"for a {MULT_BITS}-bit multiplier and a shift >= 1")
    return mult, shift


@dataclass(eq=False)
class QConv:
    """A quantised convolution: y = requant(sum(w * x) + bias)."""
    name: str
    in_ch: int
    out_ch: int
    kernel: int
    stride: int
    padding: int
    relu: bool
    weight: np.ndarray          # int8, or int16 with a codebook (out, in, k, k); |w| < 2**(w_bits-1)
    bias: np.ndarray            # int64 (out,), fits int32
    mult: np.ndarray            # int64 (out,), 0 <= mult < 2**MULT_BITS
    shift: np.ndarray           # int64 (out,), 1 <= shift <= MAX_SHIFT
    w_bits: int = 8
    in_signed: bool = False     # input activations int8 instead of uint8 (never for SqueezeNet)
    in_scale: float = 1.0       # real value of one input step
    out_scale: float = 1.0      # real value of one output step
    w_scale: np.ndarray = None  # float (out,), real value of one weight step
    # Shared weights (squeezehw.quant.compression, docs/compression.md); all None for plain weights.
    # codebook: int64 (G, E), G = 1 (per layer) or out_ch, rows sorted, padded by repeating the last
    # entry; codebook_size: int64 (G,) entries in use; every weight is an entry of its row (a zero
    # weight is the implicit zero of the bitmap encoding instead).
    codebook: np.ndarray | None = None
    codebook_size: np.ndarray | None = None
    index_bits: int | None = None       # k: bits per codebook index
    encoding: str | None = None         # "dense-index" or "bitmap"

    @property
    def out_range(self) -> tuple[int, int]:
        return (0, 255) if self.relu else (-128, 127)

    @property
    def in_range(self) -> tuple[int, int]:
        return (-128, 127) if self.in_signed else (0, 255)

    def acc_range(self) -> tuple[int, int]:
        """Exact bounds of the accumulator (bias included) over every possible input."""
        w = self.weight.reshape(self.out_ch, -1).astype(np.int64)
        lo_in, hi_in = self.in_range
        pos = np.where(w > 0, w, 0).sum(1)
        neg = np.where(w < 0, w, 0).sum(1)
        hi = pos * hi_in + neg * lo_in + self.bias
        lo = pos * lo_in + neg * hi_in + self.bias
        # zero padding puts 0 into some taps: 0 lies inside [lo_in, hi_in], so it is covered.
        return int(lo.min()), int(hi.max())

    @property
    def acc_bits(self) -> int:
        """Signed accumulator width that can never overflow for these weights."""
        lo, hi = self.acc_range()
        return bits_for_signed(min(lo, 0), max(hi, 0))

    @property
    def stream_bits(self) -> int:
        """Bits of weight storage: the encoded index stream with a codebook, else w_bits per weight."""
        if self.codebook is None:
            return self.weight.size * self.w_bits
        from .compression import encoding_bits
        return encoding_bits(self.encoding, self.weight.size, int(np.count_nonzero(self.weight)),
                             self.index_bits)

    @property
    def codebook_bits(self) -> int:
        """Bits of the codebook entries in use (w_bits each); 0 without a codebook."""
        return 0 if self.codebook is None else int(np.sum(self.codebook_size)) * self.w_bits

    @property
    def weight_bytes(self) -> int:
        """Bytes of weight storage (packed stream, codebook included), biases excluded."""
        return (self.stream_bits + 7) // 8 + (self.codebook_bits + 7) // 8


@dataclass(eq=False)
class QMaxPool:
    name: str
    kernel: int = 3
    stride: int = 2


@dataclass(eq=False)
class QAdd:
    """Bypass add: y = clamp((a * mult_a + b * mult_b + 2**(shift-1)) >> shift, 0, 255).

    ``a`` is the Fire output (uint8), ``b`` the bypass value: the Fire input (uint8, simple bypass)
    or the output of ``conv`` (int8, complex bypass).
    """
    name: str
    mult_a: int
    mult_b: int
    shift: int
    conv: QConv | None = None
    out_scale: float = 1.0


@dataclass(eq=False)
class QFire:
    name: str
    squeeze: QConv
    expand1x1: QConv
    expand3x3: QConv
    bypass: QAdd | None = None

    @property
    def out_ch(self) -> int:
        return self.expand1x1.out_ch + self.expand3x3.out_ch

    @property
    def convs(self) -> list[QConv]:
        out = [self.squeeze, self.expand1x1, self.expand3x3]
        if self.bypass is not None and self.bypass.conv is not None:
            out.append(self.bypass.conv)
        return out


@dataclass(eq=False)
class QHead:
    """Final conv (+ReLU, uint8) and global sum pool: logits are per-class sums over all pixels."""
    name: str
    conv: QConv

    @property
    def classes(self) -> int:
        return self.conv.out_ch


@dataclass(eq=False)
class IntModel:
    name: str
    in_ch: int
    height: int
    width: int
    layers: list
    mean: tuple = (0.0,)
    std: tuple = (1.0,)
    resize: int | None = None
    labels: tuple | None = None
    w_bits: int = 8
    info: dict = field(default_factory=dict)   # provenance: source, calibration, float accuracy
    # The float weights the model was quantised from, {conv name: (W float32, b float32)}, so that
    # `squeezehw eval` can compare float and integer accuracy from this one file.  Optional.
    float_weights: dict | None = None

    # --- walking -------------------------------------------------------------------------------
    def convs(self) -> list[QConv]:
        out = []
        for layer in self.layers:
            if isinstance(layer, QConv):
                out.append(layer)
            elif isinstance(layer, QFire):
                out.extend(layer.convs)
            elif isinstance(layer, QHead):
                out.append(layer.conv)
        return out

    @property
    def head(self) -> QHead:
        return self.layers[-1]

    @property
    def classes(self) -> int:
        return self.head.classes

    def shapes(self) -> list[tuple[int, int, int]]:
        """(C, H, W) after every layer; the head's entry is (classes, 1, 1)."""
        from ..frontend.ir import conv_out_size, pool_out_size
        c, h, w = self.in_ch, self.height, self.width
        out = []
        for layer in self.layers:
            if isinstance(layer, QConv):
                h = conv_out_size(h, layer.kernel, layer.stride, layer.padding)
                w = conv_out_size(w, layer.kernel, layer.stride, layer.padding)
                c = layer.out_ch
            elif isinstance(layer, QMaxPool):
                h, w = pool_out_size(h, layer.kernel, layer.stride), pool_out_size(w, layer.kernel, layer.stride)
            elif isinstance(layer, QFire):
                c = layer.out_ch
            elif isinstance(layer, QHead):
                c, h, w = layer.classes, 1, 1
            out.append((c, h, w))
        return out

    def head_pixels(self) -> int:
        """Pixels summed by the global pool (H*W of the head's input)."""
        _, h, w = ([(self.in_ch, self.height, self.width)] + self.shapes())[-2]
        return h * w

    @property
    def logit_bits(self) -> int:
        """Unsigned width of a logit (a sum of head_pixels uint8 values)."""
        return bits_for_unsigned(255 * self.head_pixels())

    def weight_bytes(self) -> dict[str, int]:
        return {c.name: c.weight_bytes for c in self.convs()}

    # --- file format ---------------------------------------------------------------------------
    def _to_arrays(self) -> tuple[dict, dict]:
        arrays, layers = {}, []

        def conv_meta(c: QConv) -> dict:
            for k in ("weight", "bias", "mult", "shift", "w_scale"):
                arrays[f"{c.name}/{k}"] = getattr(c, k)
            d = {"name": c.name, "in_ch": c.in_ch, "out_ch": c.out_ch, "kernel": c.kernel,
                 "stride": c.stride, "padding": c.padding, "relu": c.relu, "w_bits": c.w_bits,
                 "in_signed": c.in_signed, "in_scale": c.in_scale, "out_scale": c.out_scale}
            if c.codebook is not None:
                arrays[f"{c.name}/codebook"] = np.asarray(c.codebook, np.int64)
                arrays[f"{c.name}/codebook_size"] = np.asarray(c.codebook_size, np.int64)
                d.update(index_bits=int(c.index_bits), encoding=c.encoding)
            return d

        for layer in self.layers:
            if isinstance(layer, QConv):
                layers.append({"type": "conv", **conv_meta(layer)})
            elif isinstance(layer, QMaxPool):
                layers.append({"type": "maxpool", "name": layer.name, "kernel": layer.kernel,
                               "stride": layer.stride})
            elif isinstance(layer, QFire):
                d = {"type": "fire", "name": layer.name, "squeeze": conv_meta(layer.squeeze),
                     "expand1x1": conv_meta(layer.expand1x1), "expand3x3": conv_meta(layer.expand3x3),
                     "bypass": None}
                if layer.bypass is not None:
                    b = layer.bypass
                    d["bypass"] = {"name": b.name, "mult_a": b.mult_a, "mult_b": b.mult_b,
                                   "shift": b.shift, "out_scale": b.out_scale,
                                   "conv": conv_meta(b.conv) if b.conv is not None else None}
                layers.append(d)
            elif isinstance(layer, QHead):
                layers.append({"type": "head", "name": layer.name, "conv": conv_meta(layer.conv)})
            else:
                raise TypeError(f"unknown layer {layer!r}")
        meta = {"format": FORMAT, "version": VERSION, "name": self.name, "in_ch": self.in_ch,
                "height": self.height, "width": self.width, "mean": list(self.mean),
                "std": list(self.std), "resize": self.resize,
                "labels": list(self.labels) if self.labels else None, "w_bits": self.w_bits,
                "info": self.info, "layers": layers,
                "float_weights": self.float_weights is not None}
        for name, (w, b) in (self.float_weights or {}).items():
            arrays[f"float/{name}/weight"] = np.asarray(w, np.float32)
            arrays[f"float/{name}/bias"] = np.asarray(b, np.float32)
        return meta, arrays

    def _content_hash_v1(self) -> str:
        """The hash a version-1 file stored (its metadata said version 1)."""
        meta, arrays = self._to_arrays()
        meta["version"] = 1
        return self._hash(meta, arrays)

    def content_hash(self) -> str:
        meta, arrays = self._to_arrays()
        return self._hash(meta, arrays)

    @staticmethod
    def _hash(meta: dict, arrays: dict) -> str:
        h = hashlib.sha256(json.dumps(meta, sort_keys=True).encode())
        for k in sorted(arrays):
            a = np.ascontiguousarray(arrays[k])
            h.update(k.encode() + str(a.dtype).encode() + str(a.shape).encode() + a.tobytes())
        return h.hexdigest()

    def save(self, path: str | os.PathLike) -> Path:
        """Write atomically: a crash leaves either the old file or the new one, never half of one."""
        path = Path(path)
        meta, arrays = self._to_arrays()
        meta["sha256"] = self.content_hash()
        from ..outputs import atomic_write  # umask permissions; OSError -> one-line UserError
        with atomic_write(path) as f:
            np.savez_compressed(f, __meta__=np.array(json.dumps(meta)), **arrays)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "IntModel":
        path = Path(path)
        if not path.is_file():
            raise ModelFileError(f"{path}: no such integer-model file "
                                 "(create one with `squeezehw quantize -o FILE`)")
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(str(z["__meta__"]))
                arrays = {k: z[k] for k in z.files if k != "__meta__"}
        except (zipfile.BadZipFile, zlib.error, EOFError, KeyError, ValueError, OSError) as e:
            raise ModelFileError(f"{path}: not a readable squeezehw integer model ({e}); "
                                 "re-create it with `squeezehw quantize`") from e
        if meta.get("format") != FORMAT:
            raise ModelFileError(f"{path}: format is {meta.get('format')!r}, expected {FORMAT!r}")
        if meta.get("version") not in READS_VERSIONS:
            raise ModelFileError(f"{path}: format version {meta.get('version')} is not supported "
                                 f"(this squeezehw reads versions {', '.join(map(str, READS_VERSIONS))}); "
                                 "re-quantize the model")
        try:
            model = cls._from_arrays(meta, arrays)
        except (KeyError, TypeError) as e:
            raise ModelFileError(f"{path}: integer model is incomplete (missing {e})") from e
        if meta.get("version") == VERSION and model.content_hash() != meta.get("sha256"):
            raise ModelFileError(f"{path}: content hash mismatch, the file is corrupt or was edited")
        if meta.get("version") != VERSION and model._content_hash_v1() != meta.get("sha256"):
            raise ModelFileError(f"{path}: content hash mismatch, the file is corrupt or was edited")
        from .compression import CompressionError, check_codebook
        for c in model.convs():
            if c.codebook is not None:
                try:
                    check_codebook(c.name, c.weight, c.codebook, c.codebook_size, c.index_bits, c.encoding)
                except CompressionError as e:
                    raise ModelFileError(f"{path}: {e}") from None
        return model

    @classmethod
    def _from_arrays(cls, meta: dict, arrays: dict) -> "IntModel":
        def conv(d: dict) -> QConv:
            n = d["name"]
            book = {}
            if "encoding" in d:         # version 2, shared weights
                book = dict(codebook=arrays[f"{n}/codebook"], codebook_size=arrays[f"{n}/codebook_size"],
                            index_bits=d["index_bits"], encoding=d["encoding"])
            return QConv(**{k: d[k] for k in ("name", "in_ch", "out_ch", "kernel", "stride", "padding",
                                              "relu", "w_bits", "in_signed", "in_scale", "out_scale")},
                         weight=arrays[f"{n}/weight"], bias=arrays[f"{n}/bias"],
                         mult=arrays[f"{n}/mult"], shift=arrays[f"{n}/shift"],
                         w_scale=arrays[f"{n}/w_scale"], **book)
        layers = []
        for d in meta["layers"]:
            t = d["type"]
            if t == "conv":
                layers.append(conv({k: v for k, v in d.items() if k != "type"}))
            elif t == "maxpool":
                layers.append(QMaxPool(d["name"], d["kernel"], d["stride"]))
            elif t == "fire":
                b = d["bypass"]
                bypass = None if b is None else QAdd(b["name"], b["mult_a"], b["mult_b"], b["shift"],
                                                      conv(b["conv"]) if b["conv"] else None,
                                                      b["out_scale"])
                layers.append(QFire(d["name"], conv(d["squeeze"]), conv(d["expand1x1"]),
                                    conv(d["expand3x3"]), bypass))
            elif t == "head":
                layers.append(QHead(d["name"], conv(d["conv"])))
            else:
                raise ModelFileError(f"unknown layer type {t!r}")
        model = cls(meta["name"], meta["in_ch"], meta["height"], meta["width"], layers,
                    tuple(meta["mean"]), tuple(meta["std"]), meta["resize"],
                    tuple(meta["labels"]) if meta["labels"] else None, meta["w_bits"], meta["info"])
        if meta.get("float_weights"):
            model.float_weights = {c.name: (arrays[f"float/{c.name}/weight"], arrays[f"float/{c.name}/bias"])
                                   for c in model.convs()}
        return model
