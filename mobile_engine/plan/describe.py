"""Where each step's operands come from, for ``mobile-engine inspect``.

A step's inputs are arena tensors; some are views of another tensor (a reshape costs nothing, so
``/norm/Unsqueeze_output_0`` may be the graph input ``style_weights`` seen as [26, 1]). Each
operand is traced to its origin: a graph input (named, with the view's shape), the step that
wrote it, or a weight blob. Operands the step's parameters name (``inputs`` / ``norm_inputs``:
``style_scale``, ``style_bias``, ``residual``) are shown with that role and with the weight they
are combined with (``style_scale = style_weights x weight norm_style_scale f32[26x32]``).
"""
from __future__ import annotations


def _dims(shape) -> str:
    return "x".join(map(str, shape)) if shape else "scalar"


def _origins(plan) -> dict[str, str]:
    """tensor name -> where its bytes come from (graph input, or the step writing them)."""
    m = plan.manifest
    tensors = m["tensors"]
    origin: dict[str, str] = {}
    spans = []                   # (offset, end, description) of graph inputs and step outputs
    for i in m["inputs"]:
        origin[i["name"]] = f"graph input {i['name']}"
        t = tensors.get(i["name"])
        if t is not None:
            spans.append((t["offset"], t["offset"] + t["nbytes"], f"graph input {i['name']}"))
    for k, s in enumerate(plan.steps):
        for name in s["outputs"]:
            origin[name] = f"step {k}"
            t = tensors.get(name)
            if t is not None:
                spans.append((t["offset"], t["offset"] + t["nbytes"], f"step {k}"))
    for name, t in tensors.items():
        if name in origin:
            continue
        # NOTE: a view shares the bytes of what it views (same offset, no larger)
        for start, end, what in spans:
            if start == t["offset"] and t["offset"] + t["nbytes"] <= end:
                origin[name] = f"{what} (as {_dims(t['shape'])})"
                break
    return origin


def operand_lines(plan, index: int, origins: dict[str, str] | None = None) -> list[str]:
    """The lines under step ``index``: each input with its origin, the weights, the outputs."""
    origins = origins if origins is not None else _origins(plan)
    step = plan.steps[index]
    blobs = plan.manifest["blobs"]
    params = step.get("params") or {}
    roles = list(params.get("inputs") or params.get("norm_inputs") or [])
    weights = dict(step.get("weights") or {})

    def blob(key: str) -> str:
        b = blobs[weights[key]]
        return f"weight {key} {b['dtype']}[{_dims(b['shape'])}]"

    lines, used = [], set()
    for pos, name in enumerate(step["inputs"]):
        where = origins.get(name, "the arena")
        role = roles[pos - 1] if 0 < pos <= len(roles) else ("x" if pos == 0 else f"in{pos}")
        # NOTE: int8 plans split a weight into its values and scales (norm_style_scale_q, _scale)
        combined = [k for k in weights if k in (role, f"norm_{role}")
                    or k.startswith((f"{role}_", f"norm_{role}_"))] if pos else []
        if combined:
            used.update(combined)
            lines.append(f"{role:<12} = {where} x " + " & ".join(blob(k) for k in combined))
        else:
            lines.append(f"{role:<12} <- {where}" + ("" if where.startswith("graph input")
                                                      or name == "" else f" ({name})"))
    rest = [k for k in weights if k not in used]
    if rest:
        lines.append("weights      " + ", ".join(blob(k)[len("weight "):] for k in rest))
    consumers = {}
    for k, s in enumerate(plan.steps):
        for name in s["inputs"]:
            consumers.setdefault(name, []).append(k)
    outputs = {o["name"] for o in plan.outputs}
    for name in step["outputs"]:
        readers = consumers.get(name, [])
        to = ", ".join(f"step {k}" for k in readers) or ""
        if name in outputs:
            to = f"graph output {name}" + (f", {to}" if to else "")
        lines.append(f"out          -> {to or 'nothing'}"
                     + ("" if name in outputs else f" ({name})"))
    return lines


def target_line(plan) -> str:
    """What the plan was compiled for (``compile --target``): the CPU, its vector registers and
    int8 dot-product variant, and how many steps run register tiles chosen for it."""
    t = plan.manifest.get("target")
    if t is None:
        return "target: not recorded (a plan from before compile --target): tiles fit at load"
    tiled = sum(tile is not None for tile in t["tiles"])
    return (f"target: {t['name']} ({t['arch']}, LLVM {t['cpu']}: {t['vector'][0]} float lanes "
            f"x {t['vector'][1]} vector registers, int8 dot product {t['int8_dot']}); "
            f"{tiled} of {len(t['tiles'])} steps have a register tile, shown as [tile there]")


def step_lines(plan) -> list[str]:
    """Every step with its operands (``inspect``'s "steps:" section); a step with a register
    tile also shows the tile it runs as on the plan's target."""
    origins = _origins(plan)
    tiles = (plan.manifest.get("target") or {}).get("tiles") or [None] * len(plan.steps)
    out = []
    for i, (s, tile) in enumerate(zip(plan.steps, tiles)):
        there = f" [{tile}]" if tile else ""
        out.append(f"  {i:3d} {s['kernel']:<36} {s['name']}{there}")
        out += [f"        {line}" for line in operand_lines(plan, i, origins)]
    return out
