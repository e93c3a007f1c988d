"""Import a float SqueezeNet-family network from an ONNX file into the network IR.

``load_onnx(path)`` reads a graph as ``torch.onnx.export`` writes it for torchvision's
``squeezenet1_0``/``squeezenet1_1`` or for any family member (``squeezehw.frontend.torch_models``, with
simple or complex bypass), walks it from the input to the output matching the patterns the IR
can represent exactly, and returns the same ``Network`` (layers, names, float32 weights) as the
PyTorch path (``squeezehw.frontend.importer``):

* ``Conv`` (square kernel, equal strides and symmetric pads, group 1, dilation 1) + ``Relu``;
* ``MaxPool`` 3x3 stride 2, no padding, ``ceil_mode=1``;
* a Fire: squeeze ``Conv``+``Relu`` feeding two ``Conv``+``Relu`` (1x1 and 3x3 pad 1) joined by
  ``Concat(axis=1)``, optionally followed by ``Add`` of the Fire input (simple bypass) or of a 1x1
  ``Conv`` of it (complex bypass), then ``Relu``;
* the head: 1x1 ``Conv`` + ``Relu`` + ``GlobalAveragePool`` (or ``ReduceMean`` over H, W), then
  optionally ``Flatten``/``Reshape``/``Squeeze``, ending at the graph's only output.

``Identity`` and ``Dropout`` are skipped (inference).  Anything else -- another operator, or a
known operator in another arrangement -- is a ``NetworkError`` naming the node and its op type:
nothing is dropped or approximated.

Layer names come from the weight tensors' names (``features.3.squeeze.weight`` -> Fire
``features.3``), which ``torch.onnx.export`` takes from the module's state dict.  An ONNX file
carries no preprocessing: ``like`` (a ``FamilyConfig``, e.g. from ``--arch squeezenet1_1``)
supplies the name, mean/std, resize and labels, and the graph must then have exactly that
config's layers; without it the network is named after the file, uses ImageNet's mean/std for 3
input channels (0 and 1 otherwise) and resizes photographs' shorter side to H * 256 / 224.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from .ir import Conv, Fire, Head, MaxPool, Network, NetworkError

__all__ = ["load_onnx", "network_from_onnx", "SUPPORTED_ONNX"]

SUPPORTED_ONNX = ("supported: Conv (+Relu), MaxPool 3x3/2 ceil_mode=1, Fire (squeeze, expand 1x1 || 3x3, "
                  "Concat, optional Add bypass + Relu), head Conv 1x1 + Relu + GlobalAveragePool "
                  "[+ Flatten], Identity, Dropout")

_PASSTHROUGH = ("Identity", "Dropout")


class _Graph:
    """Constants, producers and consumers of an ONNX graph, with Identity/Dropout folded away."""

    def __init__(self, graph, source: str):
        from onnx import numpy_helper
        self.source = source
        self.consts: dict[str, np.ndarray] = {}
        for init in graph.initializer:
            self.consts[init.name] = numpy_helper.to_array(init)
        self.alias: dict[str, str] = {}
        self.nodes = []
        for i, n in enumerate(graph.node):
            if not n.name:
                n.name = f"{n.op_type}_{i}"
            if n.op_type == "Constant":
                self.consts[n.output[0]] = self._constant_value(n)
            elif n.op_type in _PASSTHROUGH and n.input and self.resolve(n.input[0]) in self.consts:
                self.consts[n.output[0]] = self.consts[self.resolve(n.input[0])]
            elif n.op_type in _PASSTHROUGH and n.input:
                if n.op_type == "Dropout" and len(n.output) > 1 and n.output[1]:
                    self._refuse(n, "its mask output is used")
                self.alias[n.output[0]] = self.resolve(n.input[0])
            else:
                self.nodes.append(n)
        self.consumers: dict[str, list] = {}
        for n in self.nodes:
            for t in n.input:
                if t and self.resolve(t) not in self.consts:
                    self.consumers.setdefault(self.resolve(t), []).append(n)
        inputs = [i for i in graph.input if i.name not in self.consts]
        if len(inputs) != 1:
            raise NetworkError(f"{source}: the graph has {len(inputs)} inputs "
                               f"({[i.name for i in inputs]}); a SqueezeNet takes one image tensor")
        self.input = inputs[0]
        if len(graph.output) != 1:
            raise NetworkError(f"{source}: the graph has {len(graph.output)} outputs; a SqueezeNet has one "
                               "(the class scores)")
        self.output = self.resolve(graph.output[0].name)
        self.visited: set[int] = set()

    def _constant_value(self, n) -> np.ndarray:
        from onnx import helper, numpy_helper
        for a in n.attribute:
            if a.name == "value":
                return numpy_helper.to_array(a.t)
            if a.name in ("value_float", "value_int", "value_floats", "value_ints"):
                return np.asarray(helper.get_attribute_value(a))
        self._refuse(n, "a Constant without a tensor value")

    def resolve(self, t: str) -> str:
        while t in self.alias:
            t = self.alias[t]
        return t

    def users(self, t: str) -> list:
        return self.consumers.get(self.resolve(t), [])

    def only_user(self, t: str, after) -> object:
        users = self.users(t)
        if self.resolve(t) == self.output:
            raise NetworkError(f"{self.source}: the graph ends after node {after.name!r} ({after.op_type}); "
                               "a SqueezeNet ends in a head: Conv 1x1 + Relu + GlobalAveragePool")
        if len(users) != 1:
            names = ", ".join(f"{u.name!r} ({u.op_type})" for u in users) or "nothing"
            self._refuse(after, f"its output feeds {names}; this pattern has one consumer here")
        return users[0]

    def const(self, node, t: str, what: str) -> np.ndarray:
        t = self.resolve(t)
        if t not in self.consts:
            self._refuse(node, f"its {what} is computed at run time; squeezehw needs it as a constant")
        return self.consts[t]

    def mark(self, *nodes) -> None:
        self.visited.update(id(n) for n in nodes)

    def _refuse(self, node, why: str):
        raise NetworkError(f"{self.source}: ONNX node {node.name!r} ({node.op_type}): {why}; {SUPPORTED_ONNX}")


def _attrs(node) -> dict:
    from onnx import helper
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _name_of(tensor: str, fallback: str) -> str:
    return tensor[:-len(".weight")] if tensor.endswith(".weight") and len(tensor) > 7 else fallback


def _conv(g: _Graph, node, in_ch: int, *, relu: bool, fallback: str) -> tuple[Conv, tuple]:
    a = _attrs(node)
    if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        g._refuse(node, f"auto_pad={a['auto_pad']!r}; export with explicit pads")
    if len(node.input) < 2:
        g._refuse(node, "a Conv without weights")
    w = np.asarray(g.const(node, node.input[1], "weight"))
    if not np.issubdtype(w.dtype, np.floating):
        g._refuse(node, f"weights of dtype {w.dtype}; squeezehw imports float models")
    if w.ndim != 4:
        g._refuse(node, f"a {w.ndim - 2}-D convolution (weights {w.shape}); only 2-D")
    out_ch, w_in, kh, kw = w.shape
    if len(node.input) > 2 and node.input[2]:
        b = np.array(g.const(node, node.input[2], "bias"), dtype=np.float32)   # a writable copy
    else:
        b = np.zeros(out_ch, np.float32)              # no bias = a zero bias, exactly
    group = a.get("group", 1)
    dil = list(a.get("dilations", [1, 1]))
    strides = list(a.get("strides", [1, 1]))
    pads = list(a.get("pads", [0, 0, 0, 0]))
    if group != 1 or dil != [1, 1]:
        g._refuse(node, f"group={group} dilations={dil} (only 1 and [1, 1])")
    if kh != kw or strides[0] != strides[1] or len(set(pads)) != 1:
        g._refuse(node, f"kernel {kh}x{kw}, strides {strides}, pads {pads}: only square kernels, equal "
                        "strides and the same padding on every side")
    if w_in != in_ch:
        g._refuse(node, f"takes {w_in} input channels but receives {in_ch}")
    if b.shape != (out_ch,):
        g._refuse(node, f"bias of shape {b.shape} for {out_ch} output channels")
    name = _name_of(node.input[1], fallback)
    conv = Conv(name, in_ch, out_ch, kh, strides[0], pads[0], relu)
    return conv, (w.astype(np.float32), b)


def _relu_after(g: _Graph, node):
    r = g.only_user(node.output[0], node)
    if r.op_type != "Relu":
        g._refuse(r, f"expected a Relu after {node.name!r} ({node.op_type})")
    return r


def _match_fire(g: _Graph, t: str):
    """(squeeze, squeeze relu, e1, e1 relu, e3, e3 relu, concat) when ``t`` feeds a Fire, else None."""
    for sq in g.users(t):
        if sq.op_type != "Conv":
            continue
        ru = g.users(sq.output[0])
        if len(ru) != 1 or ru[0].op_type != "Relu":
            continue
        sr = ru[0]
        ex = g.users(sr.output[0])
        if len(ex) != 2 or any(e.op_type != "Conv" for e in ex):
            continue
        relus = [g.users(e.output[0]) for e in ex]
        if any(len(r) != 1 or r[0].op_type != "Relu" for r in relus):
            continue
        cats = [g.users(r[0].output[0]) for r in relus]
        if any(len(c) != 1 or c[0].op_type != "Concat" for c in cats) or cats[0][0] is not cats[1][0]:
            continue
        cat = cats[0][0]
        order = [g.resolve(i) for i in cat.input]
        outs = [relus[0][0].output[0], relus[1][0].output[0]]
        if sorted(order) != sorted(outs) or len(order) != 2:
            continue
        if order[0] != outs[0]:
            ex = ex[::-1]
            relus = relus[::-1]
        return sq, sr, ex[0], relus[0][0], ex[1], relus[1][0], cat
    return None


def _fire(g: _Graph, t: str, in_ch: int, match, index: int, weights: dict) -> tuple[Fire, str]:
    sq, sr, e1, r1, e3, r3, cat = match
    if _attrs(cat).get("axis") not in (1, -3):
        g._refuse(cat, f"a Fire's Concat must join channels (axis 1), not axis {_attrs(cat).get('axis')}")
    fallback = f"fire{index}"
    s_conv, s_w = _conv(g, sq, in_ch, relu=True, fallback=f"{fallback}.squeeze")
    prefix = s_conv.name[:-len(".squeeze")] if s_conv.name.endswith(".squeeze") else fallback
    c1, w1 = _conv(g, e1, s_conv.out_ch, relu=True, fallback=f"{prefix}.expand1x1")
    c3, w3 = _conv(g, e3, s_conv.out_ch, relu=True, fallback=f"{prefix}.expand3x3")
    if (s_conv.kernel, c1.kernel, c3.kernel) != (1, 1, 3) or (s_conv.padding, c1.padding, c3.padding) != (0, 0, 1) \
            or any(c.stride != 1 for c in (s_conv, c1, c3)):
        g._refuse(sq, "a Fire needs squeeze 1x1, expand 1x1 and expand 3x3 with padding 1, all stride 1")
    g.mark(sq, sr, e1, r1, e3, r3, cat)
    out_ch = c1.out_ch + c3.out_ch
    others = [n for n in g.users(t) if n is not sq]
    bypass, extra, out = "none", None, cat.output[0]
    if others:
        users = g.users(cat.output[0])
        if len(users) != 1 or users[0].op_type != "Add":
            g._refuse(others[0], "the Fire input also feeds this node, which is not a bypass Add or its 1x1 Conv")
        add = users[0]
        terms = [g.resolve(i) for i in add.input]
        if len(others) != 1 or len(terms) != 2 or g.resolve(cat.output[0]) not in terms:
            g._refuse(add, "a bypass Add must add the Fire's Concat and its input (or a 1x1 Conv of it)")
        other = terms[1] if terms[0] == g.resolve(cat.output[0]) else terms[0]
        if others[0] is add and other == g.resolve(t):
            bypass = "simple"
            if in_ch != out_ch:
                g._refuse(add, f"a simple bypass needs as many input as output channels ({in_ch} != {out_ch})")
        elif others[0].op_type == "Conv" and g.resolve(others[0].output[0]) == other \
                and len(g.users(others[0].output[0])) == 1:
            bypass = "complex"
            extra, wb = _conv(g, others[0], in_ch, relu=False, fallback=f"{prefix}.bypass")
            if (extra.kernel, extra.stride, extra.padding, extra.out_ch) != (1, 1, 0, out_ch):
                g._refuse(others[0], f"a complex bypass must be a 1x1 Conv {in_ch} -> {out_ch}, stride 1, no padding")
            g.mark(others[0])
        else:
            g._refuse(others[0], "the Fire input also feeds this node, which is not a bypass Add or its 1x1 Conv")
        g.mark(add)
        out = add.output[0]
        after = g.users(out)
        if len(after) == 1 and after[0].op_type == "Relu":
            g.mark(after[0])
            out = after[0].output[0]
        elif bypass == "complex":
            g._refuse(add, "a complex bypass Add must be followed by Relu")
        # (simple bypass: both terms are >= 0, so the ReLU after the add is a no-op either way)
    fire = Fire(prefix, in_ch, s_conv.out_ch, c1.out_ch, c3.out_ch, bypass)
    for conv, w in zip(fire.convs, (s_w, w1, w3) + ((wb,) if extra else ())):
        weights[conv.name] = w
    return fire, out


_FIRE_OPS = ("Conv", "Relu", "Concat", "Add")


def _diagnose(g: _Graph, t: str, depth: int = 8) -> None:
    """A Fire-shaped region from ``t`` did not match: name its first node with an operator a Fire
    does not use (a Sigmoid for a Relu, a Sum for a Concat, ...), if there is one."""
    frontier, seen = [t], set()
    for _ in range(depth):
        nxt = []
        for x in frontier:
            for n in g.users(x):
                if id(n) in seen:
                    continue
                seen.add(id(n))
                if n.op_type not in _FIRE_OPS:
                    g._refuse(n, "unsupported operator inside a Fire")
                nxt.extend(n.output)
        frontier = nxt


def _pool_name(node, fallback: str) -> str:
    parts = [p for p in node.name.split("/") if p]
    return parts[-2] if len(parts) >= 2 and re.fullmatch(r"[A-Za-z_][\w.]*", parts[-2]) else fallback


def _head_tail(g: _Graph, relu) -> list:
    """The global pool (and flatten) after the head's Relu, which must reach the graph output."""
    users = g.users(relu.output[0])
    if len(users) != 1:
        return []
    pool = users[0]
    ok = pool.op_type == "GlobalAveragePool"
    if pool.op_type == "ReduceMean":
        a = _attrs(pool)
        axes = a.get("axes")
        if axes is None and len(pool.input) > 1 and pool.input[1]:
            axes = g.const(pool, pool.input[1], "axes").tolist()
        ok = axes is not None and sorted(x % 4 for x in axes) == [2, 3]
    if not ok:
        return []
    chain, t = [pool], pool.output[0]
    while g.resolve(t) != g.output:
        n = g.only_user(t, chain[-1])
        if n.op_type not in ("Flatten", "Reshape", "Squeeze"):
            g._refuse(n, "only Flatten/Reshape/Squeeze may follow the head's global pool")
        chain.append(n)
        t = n.output[0]
    if g.users(t):
        g._refuse(g.users(t)[0], "the graph output must be the class scores, nothing computed from them")
    return chain


def network_from_onnx(model, *, name: str, like=None, source: str = "ONNX model") -> Network:
    """The IR of an ONNX ``ModelProto`` (see the module docstring)."""
    from .family import IMAGENET_MEAN, IMAGENET_STD
    g = _Graph(model.graph, source)
    dims = g.input.type.tensor_type.shape.dim
    shape = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    if len(shape) != 4 or None in shape[1:]:
        raise NetworkError(f"{source}: input {g.input.name!r} has shape {shape}; expected (N, C, H, W) "
                           "with fixed C, H and W")
    _, c, h, w = shape
    layers, weights = [], {}
    t, ch, k = g.input.name, c, 0
    while True:
        k += 1
        match = _match_fire(g, t)
        if match:
            fire, t = _fire(g, t, ch, match, k, weights)
            layers.append(fire)
            ch = fire.out_ch
            continue
        prev = layers[-1].name if layers else "the input"
        users = g.users(t)
        if g.resolve(t) == g.output or not users:
            raise NetworkError(f"{source}: the graph ends after {prev} without a head "
                               "(Conv 1x1 + Relu + GlobalAveragePool)")
        if len(users) != 1:
            _diagnose(g, t)
            n = users[0]
            g._refuse(n, f"the output of {prev} feeds {len(users)} nodes "
                         f"({', '.join(u.op_type for u in users)}), which is not a Fire")
        n = users[0]
        if n.op_type == "MaxPool":
            a = _attrs(n)
            got = (list(a.get("kernel_shape", [])), list(a.get("strides", [1, 1])),
                   list(a.get("pads", [0, 0, 0, 0])), list(a.get("dilations", [1, 1])), a.get("ceil_mode", 0))
            if got != ([3, 3], [2, 2], [0, 0, 0, 0], [1, 1], 1) or a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
                g._refuse(n, f"kernel_shape={got[0]} strides={got[1]} pads={got[2]} dilations={got[3]} "
                             f"ceil_mode={got[4]} (only 3x3, stride 2, no padding, ceil_mode=1)")
            layers.append(MaxPool(_pool_name(n, f"pool{k}"), 3, 2))
            g.mark(n)
            t = n.output[0]
            continue
        if n.op_type != "Conv":
            g._refuse(n, f"unsupported here (after {prev})")
        if len(g.users(n.output[0])) == 1 and g.users(n.output[0])[0].op_type == "Relu" \
                and len(g.users(g.users(n.output[0])[0].output[0])) == 2:
            _diagnose(g, t)        # looks like a Fire's squeeze whose Fire did not match
        relu = _relu_after(g, n)
        tail = _head_tail(g, relu)
        conv, wb = _conv(g, n, ch, relu=True, fallback="classifier.1" if tail else f"conv{k}")
        g.mark(n, relu, *tail)
        if tail:
            if (conv.kernel, conv.stride, conv.padding) != (1, 1, 0):
                g._refuse(n, "the head conv must be 1x1, stride 1, no padding")
            layers.append(Head(conv.name, ch, conv.out_ch))
            weights[conv.name] = wb
            break
        layers.append(conv)
        weights[conv.name] = wb
        ch, t = conv.out_ch, relu.output[0]
    left = [n for n in g.nodes if id(n) not in g.visited]
    if left:
        g._refuse(left[0], "not part of the network from the input to the output")
    if like is not None:
        return _as_config(layers, weights, like, source, (c, h, w))
    three = c == 3
    net = Network(name=name, in_ch=c, height=h, width=w, layers=tuple(layers),
                  mean=IMAGENET_MEAN if three else (0.0,) * c, std=IMAGENET_STD if three else (1.0,) * c,
                  resize=int(round(min(h, w) * 256 / 224)))
    return net.with_weights(weights)


def _strip(layer):
    import dataclasses
    return dataclasses.replace(layer, name="")


def _as_config(layers, weights, like, source, chw) -> Network:
    """The network of ``like`` (names, preprocessing), after checking the graph has its layers."""
    from .family import build_network
    head = layers[-1]
    config = like if head.classes == like.classes else like.replace(classes=head.classes, labels=None)
    ref = build_network(config)
    if (ref.in_ch, ref.height, ref.width) != chw:
        raise NetworkError(f"{source}: the graph takes {chw[0]}x{chw[1]}x{chw[2]} images, {config.name} "
                           f"{ref.in_ch}x{ref.height}x{ref.width}")
    if len(ref.layers) != len(layers) or any(_strip(a) != _strip(b) for a, b in zip(ref.layers, layers)):
        i = next((i for i, (a, b) in enumerate(zip(ref.layers, layers)) if _strip(a) != _strip(b)),
                 min(len(ref.layers), len(layers)))
        got = layers[i] if i < len(layers) else "nothing"
        want = ref.layers[i] if i < len(ref.layers) else "nothing"
        raise NetworkError(f"{source}: the graph's layer {i} is {got}, but {config.name} has {want} there; "
                           "drop --arch to import the graph as it is")
    renamed = {}
    for a, b in zip(ref.layers, layers):
        convs_a = a.convs if isinstance(a, Fire) else (a.conv,) if isinstance(a, Head) else \
            (a,) if isinstance(a, Conv) else ()
        convs_b = b.convs if isinstance(b, Fire) else (b.conv,) if isinstance(b, Head) else \
            (b,) if isinstance(b, Conv) else ()
        for ca, cb in zip(convs_a, convs_b):
            renamed[ca.name] = weights[cb.name]
    return ref.with_weights(renamed)


def load_onnx(path, *, like=None) -> Network:
    """The IR of the ONNX file ``path``; ``like``: a FamilyConfig giving name and preprocessing."""
    path = Path(path)
    if not path.is_file():
        raise NetworkError(f"ONNX file {path} does not exist")
    import onnx
    try:
        model = onnx.load(str(path))
    except Exception as e:      # protobuf's DecodeError and friends: no common base class
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise NetworkError(f"ONNX file {path} is unreadable (corrupt, truncated or not ONNX: {msg})") from None
    if not model.graph.node:
        raise NetworkError(f"ONNX file {path} holds no graph (is it an ONNX model?)")
    stem = re.sub(r"[^A-Za-z0-9_]", "_", path.stem) or "onnx_model"
    return network_from_onnx(model, name=stem, like=like, source=f"ONNX file {path}")
