"""Persist scikit-learn classifiers with skops, never pickle: bytes for the registry, and a guarded load.

`dump_classifier` writes a skops archive in a canonical form, so the same fitted model always gives
the same bytes (and so the same content-addressed registry version). skops names its internal
objects after `id()` and stamps the current time on archive entries; both are rewritten here.

`load_classifier` trusts only what a classifier is made of. skops lists the types it does not trust by
default; each must come from scikit-learn, numpy or scipy (or be on a short list of standard-library
helpers such as `functools.partial`), and is trusted only where skops merely references it or builds
an instance without calling it. Anything else raises `UntrustedModelError` naming the types. That
second condition matters: skops *calls* the type named by some nodes with arguments taken from the
file (`ConstructorFromReduceNode`, `LossNode`, ...), so trusting every `numpy.*` name by prefix would
let a crafted file run `numpy.save(path, data)` (write any file) while it loads.
"""

import io
import json
import zipfile
from collections.abc import Iterator
from typing import Any

TRUSTED_MODULE_PREFIXES: tuple[str, ...] = ("sklearn.", "numpy.", "scipy.")
# Standard-library types skops needs for some fitted estimators (HistGradientBoosting with categorical
# features keeps a `functools.partial` of a scikit-learn function; the function is checked on its own).
TRUSTED_EXACT_TYPES: frozenset[str] = frozenset({"functools.partial"})
# Loaders under which skops only references a type (functions, classes) or creates an instance with
# `cls.__new__` and restores its state; a type named under any other loader is called with arguments
# from the file, so only types skops trusts by default may appear there.
_REFERENCE_LOADERS: frozenset[str] = frozenset(
    {"ObjectNode", "FunctionNode", "TypeNode", "MethodNode", "PartialNode", "TreeNode"}
)
# Parts of the trusted libraries that read or write files, build code or fetch data: never trusted,
# even as a mere reference, since a model could call them later with arguments stored in the file.
_DENIED_MODULE_PARTS: frozenset[str] = frozenset(
    {
        "testing", "_testing", "_testutils", "distutils", "f2py", "ctypeslib", "datasets", "externals",
        "io", "_datasource", "npyio", "_npyio_impl", "format", "_format_impl",
    }
)
_DENIED_NAMES: frozenset[str] = frozenset(
    {
        "load", "loads", "save", "savez", "savez_compressed", "savetxt", "loadtxt", "genfromtxt",
        "fromfile", "tofile", "fromregex", "memmap", "open", "load_npz", "save_npz",
    }
)


class UntrustedModelError(ValueError):
    """A skops payload that names types outside the allow-list; `types` lists them."""

    def __init__(self, types: list[str], detail: str = "") -> None:
        self.types = types
        super().__init__(
            f"refusing to load a model holding untrusted types: {', '.join(types)}"
            + (f" ({detail})" if detail else "")
        )


def dump_classifier(model: Any) -> bytes:
    """Serialize a fitted scikit-learn model to canonical skops bytes (same model, same bytes)."""
    import skops.io as sio

    return _canonical_archive(sio.dumps(model))


def load_classifier(data: bytes) -> Any:
    """Load a skops payload written by `dump_classifier`, refusing any type outside the allow-list.

    Raises `UntrustedModelError` when the payload names a type that is not from scikit-learn, numpy or
    scipy, or names one of those where skops would call it with arguments from the file.
    """
    import skops.io as sio

    try:
        untrusted = sio.get_untrusted_types(data=data)
    except zipfile.BadZipFile as error:
        raise ValueError(f"not a skops archive: {error}") from error
    called = _types_called_on_load(data)
    refused = sorted(name for name in untrusted if not _is_allowed(name) or name in called)
    if refused:
        called_refused = [name for name in refused if name in called and _is_allowed(name)]
        detail = f"called with stored arguments while loading: {', '.join(called_refused)}"
        raise UntrustedModelError(refused, detail if called_refused else "")
    return sio.loads(data, trusted=untrusted)


def _is_allowed(type_name: str) -> bool:
    if type_name in TRUSTED_EXACT_TYPES:
        return True
    if not type_name.startswith(TRUSTED_MODULE_PREFIXES):
        return False
    parts = type_name.split(".")
    return not (_DENIED_MODULE_PARTS.intersection(parts[1:-1]) or parts[-1] in _DENIED_NAMES)


def _schema(data: bytes) -> Any:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return json.loads(archive.read("schema.json"))


def _nodes(state: Any) -> Iterator[dict[str, Any]]:
    """Every node of a skops schema: the JSON objects carrying a `__loader__`."""
    stack = [state]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if "__loader__" in item:
                yield item
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _types_called_on_load(data: bytes) -> set[str]:
    return {
        f"{node.get('__module__')}.{node.get('__class__')}"
        for node in _nodes(_schema(data))
        if node["__loader__"] not in _REFERENCE_LOADERS
    }


def _canonical_archive(data: bytes) -> bytes:
    """Rewrite a skops archive so it depends only on the model: ids and entry names by first use.

    skops keys its memo (`__id__`, shared objects) and array entries (`file`) by `id()` of the object
    at save time; renumbering both consistently keeps the meaning and drops the address. Entries get a
    fixed timestamp and are written in a fixed order, uncompressed (as skops writes them).
    """
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        schema = json.loads(archive.read("schema.json"))
        entries = {name: archive.read(name) for name in archive.namelist() if name != "schema.json"}

    ids: dict[int, int] = {}
    files: dict[str, str] = {}

    def rewrite(item: Any) -> Any:
        if isinstance(item, list):
            return [rewrite(value) for value in item]
        if not isinstance(item, dict):
            return item
        is_node = "__loader__" in item
        result = {}
        for key, value in item.items():
            if is_node and key == "__id__" and isinstance(value, int):
                result[key] = ids.setdefault(value, len(ids) + 1)
            elif is_node and key == "file" and isinstance(value, str) and value in entries:
                suffix = value[value.rfind(".") :] if "." in value else ""
                result[key] = files.setdefault(value, f"{len(files) + 1}{suffix}")
            else:
                result[key] = rewrite(value)
        return result

    canonical_schema = rewrite(schema)
    if set(files) != set(entries):
        # An entry no node points at, or a layout this function does not know: keep skops' bytes.
        return data
    output = io.BytesIO()
    with zipfile.ZipFile(output, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr(_entry("schema.json"), json.dumps(canonical_schema, indent=2))
        for old_name, new_name in sorted(files.items(), key=lambda item: int(item[1].split(".")[0])):
            archive.writestr(_entry(new_name), entries[old_name])
    return output.getvalue()


def _entry(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_STORED
    info.external_attr = 0o644 << 16
    return info
