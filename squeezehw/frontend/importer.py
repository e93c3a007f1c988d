"""Import a trained SqueezeNet-family model into the network IR.

Two ways in:

* ``network_from_module(module, ...)`` walks a PyTorch module with torchvision's SqueezeNet layout
  (``features`` and ``classifier`` Sequentials; torchvision's own models work too, by duck typing)
  and maps each piece onto an IR node.  Anything the IR cannot represent exactly is refused with a
  ``NetworkError`` that names the module's path and type and lists what is supported: squeezehw
  never silently drops or approximates a layer.
* ``load_network(arch, weights)`` builds the architecture from a name, a ``FamilyConfig`` or a
  family JSON file, and attaches weights from a ``.pth`` or ``.npz`` state dict.

Either way the weights end up as ``{conv name: (W float32 (O, I, k, k), b float32 (O,))}`` with
conv names = torchvision's state_dict prefixes, so both paths give identical IR.
"""
from __future__ import annotations

import re
import zipfile
from pathlib import Path

import numpy as np

from .family import SQUEEZENET1_0, SQUEEZENET1_1, FamilyConfig, build_network
from .ir import Conv, Fire, Head, MaxPool, Network, NetworkError

__all__ = ["network_from_module", "load_network", "load_state_dict", "weights_from_state_dict",
           "load_imagenet_labels", "check_weights", "weight_warnings", "ARCHS", "SUPPORTED"]

ARCHS = {"squeezenet1_0": SQUEEZENET1_0, "squeezenet1_1": SQUEEZENET1_1}

SUPPORTED = (
    "supported layers: Conv2d (square kernel, groups=1, dilation=1, bias, zero padding) followed by "
    "ReLU; MaxPool2d(kernel_size=3, stride=2, padding=0, ceil_mode=True); Fire (squeeze/expand1x1/"
    "expand3x3, optional simple or complex bypass); Dropout (skipped at inference); and a classifier "
    "ending in a 1x1 Conv2d + ReLU + AdaptiveAvgPool2d(1)")


def _refuse(path: str, module, why: str):
    raise NetworkError(f"{path} ({type(module).__name__}): {why}; {SUPPORTED}")


def _tensor(t) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float32, copy=True)


def _conv(path: str, m, *, relu: bool) -> tuple[Conv, tuple]:
    """An IR Conv and its weights from an nn.Conv2d, or a NetworkError saying what differs."""
    from torch import nn
    if not isinstance(m, nn.Conv2d):
        _refuse(path, m, "expected a Conv2d here")
    k, s, p, d = m.kernel_size, m.stride, m.padding, m.dilation
    if isinstance(p, str):
        _refuse(path, m, f"padding={p!r} given as a string; give the padding as integers")
    if k[0] != k[1] or s[0] != s[1] or p[0] != p[1]:
        _refuse(path, m, f"non-square kernel/stride/padding {k}/{s}/{p}")
    if d != (1, 1) or m.groups != 1:
        _refuse(path, m, f"dilation={d} groups={m.groups} (only 1 and 1)")
    if m.bias is None:
        _refuse(path, m, "bias=False (the integer model needs a bias; add a zero one)")
    if m.padding_mode != "zeros":
        _refuse(path, m, f"padding_mode={m.padding_mode!r} (only 'zeros')")
    conv = Conv(path, m.in_channels, m.out_channels, k[0], s[0], p[0], relu)
    return conv, (_tensor(m.weight), _tensor(m.bias))


def _is_relu(m) -> bool:
    from torch import nn
    return type(m) is nn.ReLU


def _fire(path: str, m, weights: dict) -> Fire:
    mode = getattr(m, "bypass_mode", "none")
    expected = {"squeeze", "squeeze_activation", "expand1x1", "expand1x1_activation",
                "expand3x3", "expand3x3_activation"} | ({"bypass"} if mode == "complex" else set())
    children = dict(m.named_children())
    extra, missing = sorted(set(children) - expected), sorted(expected - set(children))
    if extra or missing:
        _refuse(path, m, f"a Fire with children {sorted(children)} (unexpected {extra}, missing {missing})")
    for act in ("squeeze_activation", "expand1x1_activation", "expand3x3_activation"):
        if not _is_relu(children[act]):
            _refuse(f"{path}.{act}", children[act], "a Fire activation must be ReLU")
    convs = {}
    for part in ("squeeze", "expand1x1", "expand3x3"):
        conv, w = _conv(f"{path}.{part}", children[part], relu=True)
        convs[part] = conv
        weights[conv.name] = w
    sq, e1, e3 = convs["squeeze"], convs["expand1x1"], convs["expand3x3"]
    if (sq.kernel, e1.kernel, e3.kernel) != (1, 1, 3) or any(c.stride != 1 for c in convs.values()) \
            or (sq.padding, e1.padding, e3.padding) != (0, 0, 1):
        _refuse(path, m, "a Fire needs squeeze 1x1, expand1x1 1x1 and expand3x3 3x3 with padding 1, stride 1")
    if mode not in ("none", "simple", "complex"):
        _refuse(path, m, f"bypass_mode={mode!r} (only 'simple' or 'complex')")
    fire = Fire(path, sq.in_ch, sq.out_ch, e1.out_ch, e3.out_ch, mode)
    if e1.in_ch != sq.out_ch or e3.in_ch != sq.out_ch:
        _refuse(path, m, f"expand convs take {e1.in_ch}/{e3.in_ch} channels but squeeze gives {sq.out_ch}")
    if mode == "complex":
        conv, w = _conv(f"{path}.bypass", children["bypass"], relu=False)
        if conv.kernel != 1 or conv.stride != 1 or conv.padding != 0 or \
                (conv.in_ch, conv.out_ch) != (fire.in_ch, fire.out_ch):
            _refuse(f"{path}.bypass", children["bypass"],
                    f"a complex bypass must be a 1x1 conv {fire.in_ch} -> {fire.out_ch}, stride 1, no padding")
        weights[conv.name] = w
    return fire


def network_from_module(module, *, name: str, input_size: int, in_channels: int = 3,
                        mean, std, resize: int | None = None, labels=None) -> Network:
    """The IR (with float weights) of a PyTorch SqueezeNet-family module.

    ``module`` needs ``features`` and ``classifier`` Sequentials in torchvision's layout (our
    ``torch_models`` or torchvision's own).  ``mean``/``std`` are the input normalisation of pixels
    scaled to [0, 1], one value per input channel; ``resize`` the shorter-side resize for photographs.
    """
    from torch import nn
    for attr in ("features", "classifier"):
        if not isinstance(getattr(module, attr, None), nn.Sequential):
            raise NetworkError(f"{type(module).__name__} has no '{attr}' Sequential; squeezehw imports "
                               "models with torchvision's SqueezeNet layout (features + classifier)")
    if isinstance(input_size, bool) or not isinstance(input_size, int) or input_size < 1:
        raise NetworkError(f"input_size must be a positive integer, not {input_size!r}")
    layers, weights = [], {}
    seq = [(f"features.{n}", m) for n, m in module.features.named_children()]
    i = 0
    while i < len(seq):
        path, m = seq[i]
        if isinstance(m, nn.Conv2d):
            nxt = seq[i + 1][1] if i + 1 < len(seq) else None
            if not _is_relu(nxt):
                _refuse(path, m, "a Conv2d must be followed by ReLU (only a complex bypass conv has none)")
            conv, w = _conv(path, m, relu=True)
            layers.append(conv)
            weights[path] = w
            i += 2
            continue
        if isinstance(m, nn.MaxPool2d):
            if (m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode) not in (
                    (3, 2, 0, 1, True), ((3, 3), (2, 2), (0, 0), (1, 1), True)):
                _refuse(path, m, f"kernel_size={m.kernel_size} stride={m.stride} padding={m.padding} "
                                 f"dilation={m.dilation} ceil_mode={m.ceil_mode}")
            layers.append(MaxPool(path, 3, 2))
        elif all(isinstance(getattr(m, a, None), nn.Conv2d) for a in ("squeeze", "expand1x1", "expand3x3")):
            layers.append(_fire(path, m, weights))     # our Fire/BypassFire or torchvision's Fire
        elif isinstance(m, nn.Dropout):
            pass                                        # identity at inference
        else:
            _refuse(path, m, "unsupported layer")
        i += 1
    layers.append(_head(module.classifier, weights))
    net = Network(name=name, in_ch=in_channels, height=input_size, width=input_size,
                  layers=tuple(layers), mean=tuple(float(x) for x in mean),
                  std=tuple(float(x) for x in std), resize=resize,
                  labels=tuple(labels) if labels is not None else None)
    return net.with_weights(weights)


def _head(classifier, weights: dict) -> Head:
    """Dropouts, then 1x1 Conv2d, ReLU, AdaptiveAvgPool2d(1) (an nn.Flatten after it is allowed)."""
    from torch import nn
    mods = [(f"classifier.{n}", m) for n, m in classifier.named_children()]
    rest = [(p, m) for p, m in mods if not isinstance(m, nn.Dropout)]
    if rest and isinstance(rest[-1][1], nn.Flatten):
        rest = rest[:-1]
    kinds = [type(m).__name__ for _, m in rest]
    if len(rest) != 3 or not isinstance(rest[0][1], nn.Conv2d):
        where, m = rest[0] if rest and not isinstance(rest[0][1], nn.Conv2d) else ("classifier", classifier)
        _refuse(where, m, f"the classifier holds {kinds}; it must be [Dropout,] Conv2d 1x1, ReLU, "
                          "AdaptiveAvgPool2d(1)")
    (cpath, conv_m), (rpath, relu_m), (ppath, pool_m) = rest
    if not _is_relu(relu_m):
        _refuse(rpath, relu_m, "the head conv must be followed by ReLU")
    if not isinstance(pool_m, nn.AdaptiveAvgPool2d) or pool_m.output_size not in (1, (1, 1)):
        _refuse(ppath, pool_m, "the head must end in a global average pool, AdaptiveAvgPool2d(1)")
    conv, w = _conv(cpath, conv_m, relu=True)
    if conv.kernel != 1 or conv.stride != 1 or conv.padding != 0:
        _refuse(cpath, conv_m, "the head conv must be 1x1, stride 1, no padding")
    weights[cpath] = w
    return Head(cpath, conv.in_ch, conv.out_ch)


# --- state dicts and weight files ----------------------------------------------------------------
def weights_from_state_dict(net: Network, state_dict, *, source: str = "state dict") -> dict:
    """``{conv name: (W, b)}`` for ``net`` from a torchvision-layout state dict (arrays or tensors).

    Missing or unexpected keys and wrong shapes raise NetworkError listing the first few."""
    arrays = {}
    for k, v in dict(state_dict).items():
        if hasattr(v, "detach"):
            v = v.detach().cpu().numpy()
        arrays[k] = v
    expected = {}
    for conv in net.convs():
        expected[f"{conv.name}.weight"] = conv.weight_shape
        expected[f"{conv.name}.bias"] = (conv.out_ch,)
    missing = [k for k in expected if k not in arrays]
    unexpected = [k for k in arrays if k not in expected]
    if arrays and len(missing) == len(expected):
        raise NetworkError(f"{source} are not a SqueezeNet-family state dict: none of its keys "
                           f"({_few(sorted(arrays), 3)}) is a SqueezeNet weight such as "
                           f"{next(iter(expected))!r}. squeezehw imports SqueezeNet-family networks only")
    for k in expected:
        if k in arrays and not np.issubdtype(np.asarray(arrays[k]).dtype, np.floating):
            raise NetworkError(f"{source}: {k} has dtype {np.asarray(arrays[k]).dtype}, expected floating point")
    wrong = [f"{k}: {tuple(np.shape(arrays[k]))} instead of {shape}"
             for k, shape in expected.items() if k in arrays and tuple(np.shape(arrays[k])) != shape]
    problems = []
    if missing:
        problems.append(f"missing keys {_few(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {_few(unexpected)}")
    if wrong:
        problems.append(f"shape mismatches {_few(wrong)}")
    if problems:
        raise NetworkError(f"{source} do not fit {net.name}: " + "; ".join(problems)
                           + ". Check the architecture (and num_classes) matches the weights")
    out = {}
    for conv in net.convs():
        w = np.asarray(arrays[f"{conv.name}.weight"], dtype=np.float32)
        b = np.asarray(arrays[f"{conv.name}.bias"], dtype=np.float32)
        out[conv.name] = (w, b)
    return out


def _few(items: list, n: int = 5) -> str:
    shown = ", ".join(str(x) for x in items[:n])
    return f"[{shown}{f', ... ({len(items) - n} more)' if len(items) > n else ''}]"


def load_state_dict(path) -> dict:
    """A state dict ``{key: float32 ndarray}`` from a ``.pth``/``.pt`` (torch.load with
    weights_only=True: a state dict, or a dict holding one under 'state_dict' or 'model') or an
    ``.npz`` of state-dict arrays.  Keys from ``nn.DataParallel`` ('module.' prefix) are unwrapped."""
    path = Path(path)
    if not path.is_file():
        raise NetworkError(f"weights file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as z:
                sd = {k: np.asarray(z[k]) for k in z.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as e:
            raise NetworkError(f"weights file {path} is unreadable (not a complete .npz: {e})") from None
    elif suffix in (".pth", ".pt"):
        import pickle

        import torch
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except (RuntimeError, OSError, EOFError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile) as e:
            found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(e))
            if found:
                raise NetworkError(f"weights file {path} holds a pickled Python object ({found.group(1)}, e.g. "
                                   "a whole model saved with torch.save(model)), which squeezehw does not "
                                   "unpickle; save the weights with torch.save(model.state_dict(), FILE)") from None
            why = re.search(r"WeightsUnpickler error: \s*(.+)", str(e))
            msg = _plain(why.group(1) if why else str(e).splitlines()[0]) if str(e) else type(e).__name__
            raise NetworkError(f"weights file {path} is unreadable (corrupt, truncated or not a "
                               f"torch file: {msg})") from None
        if isinstance(obj, dict):
            for key in ("state_dict", "model"):
                if isinstance(obj.get(key), dict):
                    obj = obj[key]
                    break
        if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
            raise NetworkError(f"weights file {path} holds a {type(obj).__name__}, not a state dict "
                               "(save model.state_dict(), not the model)")
        sd = {k: v.detach().cpu().numpy() for k, v in obj.items()}
    else:
        raise NetworkError(f"weights file {path}: unknown extension {path.suffix!r}; use .pth, .pt, .npz "
                           "or .onnx")
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    # integer entries (e.g. BatchNorm's num_batches_tracked) are left as they are: the key check in
    # weights_from_state_dict names them, and a SqueezeNet's own weights are checked for dtype there
    return {k: v.astype(np.float32) if np.issubdtype(v.dtype, np.floating) else v for k, v in sd.items()}


def _plain(text: str) -> str:
    """``text`` without terminal escape sequences (torch's messages carry bold/colour codes)."""
    return re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text).strip()


# weights of a trained float network are small numbers; beyond this they overflow float32
# activations (inf/NaN) long before quantisation could mean anything
PLAUSIBLE_WEIGHT = 1e6


def check_weights(net: Network, source: str) -> None:
    """NetworkError for weights no trained network has: NaN/inf or absurd magnitudes."""
    for conv in net.convs():
        w, b = net.weights[conv.name]
        big = max(float(np.abs(w).max(initial=0)), float(np.abs(b).max(initial=0)))
        if not np.isfinite(big):
            raise NetworkError(f"{source}: {conv.name} contains NaN or infinity")
        if big > PLAUSIBLE_WEIGHT:
            raise NetworkError(f"{source}: {conv.name} has a weight of magnitude {big:.3g} (over "
                               f"{PLAUSIBLE_WEIGHT:.0e}); trained weights are small numbers: check the file "
                               "was not scaled or corrupted")


def weight_warnings(net: Network) -> list[str]:
    """Warnings worth printing about float weights that import fine but make a useless model."""
    zero = [c.name for c in net.convs() if not np.any(net.weights[c.name][0])]
    if not zero:
        return []
    if len(zero) == len(net.convs()):
        return [f"every weight of {net.name} is zero: its logits do not depend on the input (were the "
                "weights saved before training?)"]
    return [f"{len(zero)} of {len(net.convs())} convolutions of {net.name} have only zero weights "
            f"({_few(zero, 3)}); check the weights file"]


def _config_of(arch) -> FamilyConfig:
    if isinstance(arch, FamilyConfig):
        return arch
    if isinstance(arch, str) and arch in ARCHS:
        return ARCHS[arch]
    if isinstance(arch, (str, Path)) and (Path(arch).suffix.lower() == ".json" or Path(arch).exists()):
        return FamilyConfig.load(arch)
    raise NetworkError(f"unknown architecture {arch!r}; use one of {sorted(ARCHS)}, a FamilyConfig "
                       "or the path of a family JSON file")


def load_network(arch, weights=None, *, num_classes: int | None = None) -> Network:
    """The IR of ``arch`` ('squeezenet1_0', 'squeezenet1_1', a FamilyConfig or a family JSON path),
    with float weights from ``weights`` (.pth/.pt/.npz state dict) when given, else shapes only.

    ``num_classes`` overrides the config's class count; when it is None and the weights hold
    ``classifier.1.weight``, the class count is taken from there (a fine-tuned head)."""
    if weights is not None and Path(weights).suffix.lower() == ".onnx":
        from .onnx_import import load_onnx
        net = load_onnx(weights, like=None if arch is None else _config_of(arch))
        check_weights(net, f"weights in {weights}")
        return net
    config = _config_of(arch)
    sd = load_state_dict(weights) if weights is not None else None
    if num_classes is None and sd is not None and "classifier.1.weight" in sd:
        num_classes = int(sd["classifier.1.weight"].shape[0])
    if num_classes is not None and num_classes != config.classes:
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise NetworkError(f"num_classes must be a positive integer, not {num_classes!r}")
        config = config.replace(classes=num_classes, labels=None)
    net = build_network(config)
    if sd is not None:
        net = net.with_weights(weights_from_state_dict(net, sd, source=f"weights in {weights}"))
        check_weights(net, f"weights in {weights}")
    return net


def load_imagenet_labels(path) -> tuple[str, ...]:
    """Class names from a ``classes.tsv`` (columns index, wnid, name; a header line is allowed),
    ordered by index."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise NetworkError(f"labels file {path} does not exist") from None
    rows = {}
    for n, line in enumerate(lines, 1):
        cols = line.rstrip("\n").split("\t")
        if not line.strip() or (n == 1 and not cols[0].strip().isdigit()):
            continue                                    # blank line or header
        if len(cols) < 3 or not cols[0].strip().isdigit():
            raise NetworkError(f"{path}:{n}: expected 'index<TAB>wnid<TAB>name', got {line!r}")
        rows[int(cols[0])] = cols[2].strip()
    if sorted(rows) != list(range(len(rows))):
        raise NetworkError(f"{path}: class indices are not 0..{len(rows) - 1} without gaps")
    return tuple(rows[i] for i in range(len(rows)))
