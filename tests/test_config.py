"""The --config.file loader: good files load, every bad one gives one exact file:line:key line."""

import textwrap

import pytest

from minerwatch import config


def write(tmp_path, text):
    path = tmp_path / "minerwatch.yml"
    path.write_text(textwrap.dedent(text))
    return str(path)


def test_full_config_loads(tmp_path):
    path = write(tmp_path, """\
        process:
          top_k: 3
          max_suspects: 10
          suspect_busy_cores: 0.8
        signatures:
          extra_names: [ourminer]
          extra_patterns: ['--secret-pool-flag']
        allowlist:
          - name: restic
            user: backup
          - exe: /usr/bin/ffmpeg
          - sha256: "%s"
        """ % ("ab" * 32))
    cfg = config.load(path)
    assert (cfg.top_k, cfg.max_suspects, cfg.suspect_busy_cores) == (3, 10, 0.8)
    assert cfg.extra_names == ["ourminer"]
    assert cfg.extra_patterns == ["--secret-pool-flag"]
    assert [(r.name, r.user, r.exe) for r in cfg.allowlist[:2]] == [("restic", "backup", None), (None, None, "/usr/bin/ffmpeg")]
    assert cfg.allowlist[0].where == f"{path}:9"


def test_empty_file_is_the_defaults(tmp_path):
    cfg = config.load(write(tmp_path, ""))
    assert cfg.top_k is None and cfg.allowlist == []


@pytest.mark.parametrize(
    "text, message",
    [
        ("proces:\n  top_k: 3\n",
         "{f}:1: proces: unknown key (known: allowlist, antivirus, gpu, network, process, signatures)"),
        ("process:\n  top_k: -1\n", "{f}:2: process.top_k: must be an integer >= 0"),
        ("process:\n  top_k: many\n", "{f}:2: process.top_k: must be an integer >= 0"),
        ("process:\n  suspect_busy_cores: yes\n", "{f}:2: process.suspect_busy_cores: must be a number >= 0"),
        ("process: [1, 2]\n", "{f}:1: process: must be a mapping"),
        ("signatures:\n  extra_patterns:\n    - 'ok'\n    - '(unclosed'\n",
         "{f}:4: signatures.extra_patterns[1]: invalid regular expression: missing ), unterminated subpattern at position 0"),
        ("signatures:\n  extra_names: xmrig2\n", "{f}:2: signatures.extra_names: must be a list"),
        ("allowlist:\n  - name: restic\n  - {}\n",
         "{f}:3: allowlist[1]: an allowlist entry needs at least one of name, exe, user, sha256"),
        ("allowlist:\n  - sha256: abc\n", "{f}:2: allowlist[0].sha256: must be 64 hexadecimal characters"),
        ("allowlist:\n  - name: a\n    colour: red\n",
         "{f}:3: allowlist[0].colour: unknown key (known: exe, name, sha256, user)"),
        ("process:\n  top_k: 1\n  top_k: 2\n", "{f}:3: process.top_k: given twice"),
        ("process: {top_k: 1\n", "{f}:2: invalid YAML: expected ',' or '}', but got '<stream end>'"),
    ],
)
def test_bad_config_names_file_line_and_key(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(config.ConfigError) as err:
        config.load(path)
    assert str(err.value) == message.replace("{f}", path)


def test_missing_file(tmp_path):
    with pytest.raises(config.ConfigError) as err:
        config.load(str(tmp_path / "nope.yml"))
    assert str(err.value) == f"{tmp_path / 'nope.yml'}: cannot read: No such file or directory"
