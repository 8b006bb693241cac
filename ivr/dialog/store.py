"""Serving flows while ops edit them: a reload that fails keeps the last good version."""

from __future__ import annotations

from pathlib import Path

import yaml

from ivr.dialog.flow import Flow, FlowError, load_flow


class FlowStore:
    """One flow file. `flow` is the last version that loaded; `errors` those of the last reload.

    The first load must succeed (FlowError otherwise): there is nothing older to serve.
    """

    def __init__(self, path: str | Path, grammar_dir: Path | None = None) -> None:
        self.path = Path(path)
        self.grammar_dir = grammar_dir
        self._flow = load_flow(self.path, grammar_dir)
        self.errors: list[str] = []

    @property
    def flow(self) -> Flow:
        return self._flow

    def reload(self) -> list[str]:
        """Load the file again; on errors keep serving the previous Flow and return them."""
        try:
            flow = load_flow(self.path, self.grammar_dir)
        except FlowError as exc:
            self.errors = list(exc.errors)
            return list(self.errors)
        self._flow, self.errors = flow, []
        return []


class FlowRegistry:
    """Flows by name (the file's ``name:``), e.g. every flow file in ``grammars/``."""

    def __init__(self, grammar_dir: Path | None = None) -> None:
        self.grammar_dir = grammar_dir
        self.stores: dict[str, FlowStore] = {}

    @classmethod
    def from_dir(cls, directory: Path) -> tuple[FlowRegistry, list[str]]:
        """Load every ``*.yaml`` in `directory` that has ``nodes:`` (grammars are skipped);
        returns the registry and the errors of files that did not load."""
        registry, errors = cls(directory), []
        for path in sorted(directory.glob("*.yaml")):
            try:
                data = yaml.safe_load(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
                errors.append(f"{path}: cannot read: {exc}")
                continue
            if isinstance(data, dict) and "nodes" in data:
                try:
                    registry.add(path)
                except FlowError as exc:
                    errors += exc.errors
        return registry, errors

    def add(self, path: str | Path) -> Flow:
        store = FlowStore(path, self.grammar_dir)
        self.stores[store.flow.name] = store
        return store.flow

    def get(self, name: str) -> Flow:
        try:
            return self.stores[name].flow
        except KeyError:
            known = ", ".join(sorted(self.stores)) or "none"
            raise KeyError(f"no flow named {name!r} (known: {known})") from None

    def reload(self) -> dict[str, list[str]]:
        """Reload every flow; the errors by flow name (only flows that failed)."""
        results = {name: store.reload() for name, store in self.stores.items()}
        return {name: errors for name, errors in results.items() if errors}
