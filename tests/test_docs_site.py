"""The documentation site: the README's link map, the pages it shows from the README, the
API reference's targets and the layer diagram drawn from the import contracts.

``mkdocs build --strict`` (in ``.ci/run``) checks links and renders the API reference; these
tests check, without MkDocs installed and in well under a second each, what the build
cannot: that the committed layer diagram matches the contracts, that each README section
the site includes exists, and that the README stays a first visit's page.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
README = REPO / "README.md"

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib


def _hook(name: str):
    """A module of ``docs/hooks/``, imported from its file."""
    spec = importlib.util.spec_from_file_location(f"_docs_hook_{name}", DOCS / "hooks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _nav_pages() -> list[str]:
    from test_readme import nav_pages

    return nav_pages()


def test_every_page_is_in_the_navigation_and_every_entry_exists():
    pages = _nav_pages()
    assert len(pages) == len(set(pages))
    on_disk = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")}
    assert set(pages) == on_disk


def test_the_readme_is_a_first_visit_with_a_link_to_every_page():
    """At most 250 lines: install, quick start, test, and a link to each page (the API's index)."""
    text = README.read_text()
    assert len(text.splitlines()) <= 250
    for heading in ("## Install", "## Quick start", "## Test"):
        assert heading in text.splitlines(), heading
    linked = set(re.findall(r"\]\(docs/([\w/.-]+\.md)(?:#[\w-]+)?\)", text))
    top = [p for p in _nav_pages() if "/" not in p or p.endswith("/index.md")]  # API pages: via api/index.md
    missing = [p for p in top if p not in linked]
    assert not missing, f"the README's link map lacks {missing}"
    for page in linked:
        assert (DOCS / page).is_file(), page


def _sections(text: str) -> dict[str, str]:
    """The snippet sections of a file: ``--8<-- [start:name]`` ... ``--8<-- [end:name]``."""
    starts = re.findall(r"--8<-- \[start:([\w-]+)\]", text)
    out = {}
    for name in starts:
        match = re.search(rf"--8<-- \[start:{name}\][^\n]*\n(.*?)\n[^\n]*--8<-- \[end:{name}\]", text, re.DOTALL)
        assert match, f"section {name!r} has no end marker"
        out[name] = match.group(1)
    return out


def test_each_readme_section_the_site_includes_exists_and_is_included_once():
    """A page shows a README section by ``--8<-- "README.md:<name>"``; the section exists,
    holds text, and is shown on exactly one page (so each block appears once on the site)."""
    sections = _sections(README.read_text())
    assert {"install", "quickstart", "train", "score", "test"} <= set(sections)
    included: dict[str, list[str]] = {}
    for page in DOCS.rglob("*.md"):
        for name in re.findall(r'^--8<-- "README\.md:([\w-]+)"$', page.read_text(), re.MULTILINE):
            included.setdefault(name, []).append(page.name)
    assert set(included) == set(sections), (sorted(included), sorted(sections))
    for name, pages in included.items():
        assert len(pages) == 1 and sections[name].strip(), (name, pages)


def test_every_api_reference_target_is_a_module_with_the_members_it_lists():
    """Each ``::: module`` directive names a module of the installed package, and each
    listed member is defined there (by source text: nothing heavy is imported)."""
    directives = 0
    for page in sorted((DOCS / "api").glob("*.md")):
        text = page.read_text()
        for module, members in re.findall(r"^::: ([\w.]+)\n    options:\n      members:\n((?:        - \w+\n)+)", text, re.MULTILINE):
            directives += 1
            spec = importlib.util.find_spec(module)
            assert spec is not None and spec.origin, f"{page.name}: no module {module}"
            source = Path(spec.origin).read_text()
            for member in re.findall(r"- (\w+)", members):
                assert re.search(rf"^(class|def) {member}\b|^{member}\b.*=", source, re.MULTILINE), (
                    f"{page.name}: {module} defines no {member}")
    assert directives >= 10


def test_the_api_index_lists_every_public_name():
    import vlmrm

    text = (DOCS / "api" / "index.md").read_text()
    listed = set(re.findall(r"\[`vlmrm\.(\w+)`\]", text))
    assert listed == set(vlmrm.__all__)


# -- the layer diagram ---------------------------------------------------------------------


def _contract_pairs() -> list[tuple[str, str]]:
    """(importer, imported) of every ``forbidden`` contract, read here independently of the
    hook, with the wildcard left out and a package's pairing with its own entry point skipped
    (``layers`` and ``independence`` contracts order modules inside one package: the page
    lists them under the diagram)."""
    contracts = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    pairs = []
    for c in contracts:
        if c.get("type", "forbidden") != "forbidden":
            continue
        for s in c["source_modules"]:
            for f in c["forbidden_modules"]:
                a = s.removesuffix(".*").removeprefix("vlmrm.")
                b = f.removesuffix(".*").removeprefix("vlmrm.")
                if s != "vlmrm.*" and a != b:
                    pairs.append((a, b))
    return pairs


def test_the_layers_put_every_forbidden_import_above_its_importer():
    layers = _hook("layers")
    stack = layers.layers(layers.load_contracts(REPO / "pyproject.toml"))
    level = {name: len(stack) - i for i, layer in enumerate(stack) for name in layer}
    pairs = _contract_pairs()
    assert len(pairs) > 100
    for importer, imported in pairs:
        assert level[imported] > level[importer], (importer, imported, level[importer], level[imported])
    assert {"train", "evaluate", "score", "record"} <= set(stack[0])  # the commands on top
    assert {"runtime", "rollout"} <= set(stack[-1])


def test_a_cycle_in_the_contracts_is_refused():
    layers = _hook("layers")
    contracts = [
        {"name": "a", "source_modules": ["vlmrm.a"], "forbidden_modules": ["vlmrm.b"]},
        {"name": "b", "source_modules": ["vlmrm.b"], "forbidden_modules": ["vlmrm.a"]},
    ]
    with pytest.raises(ValueError, match="cycle"):
        layers.layers(contracts)


def test_the_committed_diagram_is_the_one_the_contracts_draw():
    layers = _hook("layers")
    page = (DOCS / "contributing.md").read_text()
    generated = layers.render(REPO / "pyproject.toml")
    assert generated in page, "docs/contributing.md is stale: run python docs/hooks/layers.py"
    for contract in layers.load_contracts(REPO / "pyproject.toml"):
        assert contract["name"] in generated


def test_the_api_layout_is_the_installed_one(tmp_path):
    """``vlmrm.envs`` and ``vlmrm.agents`` are found where a wheel puts them."""
    pytest.importorskip("mkdocs")
    layout = _hook("api_layout").installed_layout(REPO, tmp_path)
    assert (layout / "vlmrm" / "envs" / "registry.py").resolve() == (REPO / "envs" / "registry.py").resolve()
    assert (layout / "vlmrm" / "agents" / "api.py").is_file()
    assert (layout / "vlmrm" / "reward.py").resolve() == (REPO / "vlmrm" / "reward.py").resolve()


def test_sphinx_roles_read_as_code_on_the_site():
    roles = _hook("sphinx_roles")
    html = "see :func:<code>vlmrm.load_clip</code> and :mod:<code>~vlmrm.agents.config</code>; a:b <code>x</code>"
    assert roles.plain_roles(html) == "see <code>vlmrm.load_clip</code> and <code>config</code>; a:b <code>x</code>"


def test_the_page_lists_every_layers_contract_top_first():
    page = (REPO / "docs" / "contributing.md").read_text()
    contracts = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    stacked = [c for c in contracts if c.get("type") == "layers"]
    assert stacked
    for c in stacked:
        line = next(row for row in page.splitlines() if row.startswith(f"- **{c['name']}**"))
        line = line.split("**: ", 1)[1]  # the stack, after the contract's name
        first, last = c["layers"][0].split("|")[0].strip(), c["layers"][-1].split("|")[0].strip()
        assert line.index(first) < line.index(last), line
