"""The documentation: every server command it shows binds to loopback."""

import re

from tests.conftest import REPO

SERVER_COMMAND = re.compile(r"mlflow (ui|server|models serve)\b")
DOCUMENTS = [REPO / "README.md", REPO / "Makefile", *sorted((REPO / "docs").glob("*.md")),
             *sorted((REPO / "src").rglob("*.py")), *sorted((REPO / "stages").glob("*.py"))]


def documented_commands(text: str) -> list[str]:
    """Shell commands in a text: fenced code lines, inline `code` spans and recipe lines,
    with backslash continuations joined."""
    text = text.replace("\\\n", " ")
    fenced = [line for block in re.findall(r"```.*?\n(.*?)```", text, flags=re.S)
              for line in block.splitlines()]
    inline = re.findall(r"`([^`\n]+)`", text)
    recipes = [line for line in text.splitlines() if line.startswith("\t")]
    return [command.strip() for command in fenced + inline + recipes]


def test_every_documented_server_binds_to_loopback():
    """README, docs/, Makefile and docstrings: each command that starts a server says
    127.0.0.1."""
    commands = [(path.name, command) for path in DOCUMENTS
                for command in documented_commands(path.read_text())
                if SERVER_COMMAND.search(command) and " -" in command]
    assert len(commands) >= 4, commands
    for name, command in commands:
        assert "127.0.0.1" in command, f"{name}: {command}"


def test_every_documented_param_override_names_a_real_param():
    """`dvc exp run -S section.key=value` in the docs: the key exists in params.yaml."""
    import yaml

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    overrides = [(path.name, match) for path in DOCUMENTS
                 for command in documented_commands(path.read_text())
                 for match in re.findall(r"-S '?([a-z_]+\.[a-z_]+)=", command)]
    assert len(overrides) >= 5, overrides
    for name, key in overrides:
        section, option = key.split(".")
        assert option in params.get(section, {}), f"{name}: -S {key}"


def test_links_between_pages_resolve():
    for path in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#:]+)\)", path.read_text()):
            assert (path.parent / target).exists(), f"{path.name} links to {target}"
