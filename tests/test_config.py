import pytest

from rebuilder import config
from rebuilder.errors import ConfigError

from .fixtures.operator import rebuild

PROFILE = '[profile."x"]\ndistro = "debian"\nreleases = ["a"]\nsource = "s"\n'


def write(tmp_path, text, name="rebuilder.toml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_rebuilderd_sync_conf_loads_unchanged(tmp_path):
    sc = write(
        tmp_path,
        """
[profile."debian-main"]
distro = "debian"
suite = "main"
architecture = "amd64"
releases = ["bookworm", {name = "trixie", source = "https://mirror.example/other"}]
source = "https://mirror.example/debian"
maintainers = ["Jane <jane@"]
excludes = ["*-dbg"]
""",
        "rebuilderd-sync.conf",
    )
    cfg = config.load(None, sync_config=sc)
    p = cfg.profiles["debian-main"]
    assert p.components == ("main",) and p.architectures == ("amd64",)
    assert [(r.name, r.source) for r in p.releases] == [
        ("bookworm", "https://mirror.example/debian"),
        ("trixie", "https://mirror.example/other"),
    ]
    assert p.maintainers == ("Jane <jane@",) and p.excludes == ("*-dbg",)


def test_settings_and_backends_resolve_paths(tmp_path):
    cfg = config.load(
        write(
            tmp_path,
            """
[rebuilder]
state_dir = "st"
jobs = 3
retry_bad = {backoff = 60, max = 1}
[backend."debian"]
path = "backends/debian.sh"
""",
        )
    )
    assert cfg.settings.state_dir == tmp_path / "st"
    assert cfg.settings.jobs == 3 and cfg.settings.retry_bad.max == 1
    assert cfg.backends["debian"] == tmp_path / "backends/debian.sh"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[rebuilder]\njobz = 1\n", "[rebuilder] unknown key 'jobz'"),
        ("[rebuilder]\njobs = -1\n", "[rebuilder] jobs: expected a non-negative integer"),
        (
            '[profile."x"]\ndistro = "debian"\nreleases = ["a"]\nsource = "s"\ncolour = 1\n',
            "unknown key 'colour'",
        ),
        ('[profile."x"]\ndistro = "gentoo"\n', "distro: expected one of"),
        ('[profile."x"]\ndistro = "debian"\nreleases = ["a"]\n', "no source (mirror URL)"),
        ("not toml [", "not valid TOML"),
        ('[backend."debian"]\npth = "x"\n', 'expects exactly: path = "..."'),
        # issue 12: hostile or mistaken configurations are refused at load
        (PROFILE + 'pkgs = ["[abc"]\n', "pkgs: invalid glob '[abc': '[' at 0 opens a character"),
        (PROFILE + 'excludes = ["ok*", "x[!"]\n', "excludes: invalid glob 'x[!'"),
        ('[backend."debain"]\npath = "x"\n', '[backend."debain"]: unknown backend (known: '),
        (
            '[rebuilder]\nsite_dir = "public"\nsigning_key = "public/keys/rebuilder.key"\n',
            "public/keys/rebuilder.key is inside the site directory",
        ),
    ],
)
def test_errors_name_file_key_and_problem(tmp_path, text, message):
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        config.load(p)
    assert str(p) in str(e.value) and message in str(e.value)


@pytest.mark.slow  # runs rebuild
def test_a_config_that_is_not_utf8_is_one_line_naming_the_file(tmp_path):
    p = tmp_path / "rebuilder.toml"
    p.write_bytes(b'[rebuilder]\nsite_url = "caf\xe9"\n')  # Latin-1, not UTF-8
    with pytest.raises(ConfigError) as e:
        config.load(p)
    assert str(e.value) == f"{p}: not UTF-8 text (byte 27); TOML files are UTF-8"
    r = rebuild(tmp_path, "status", "--config", str(p))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1] == f"rebuild: error: {e.value}"


def test_a_method_backend_table_is_known_and_a_key_beside_the_site_is_fine(tmp_path):
    cfg = config.load(
        write(
            tmp_path,
            '[rebuilder]\nsigning_key = "site-key/rebuilder.key"\n'
            + PROFILE
            + 'method = "suite-chroot"\n[backend."debian-suite-chroot"]\npath = "b.sh"\n',
        )
    )
    assert cfg.backends["debian-suite-chroot"] == tmp_path / "b.sh"


def test_unknown_profile_selected(tmp_path):
    cfg = config.load(
        write(tmp_path, '[profile."a"]\ndistro = "debian"\nreleases=["x"]\nsource="s"\n')
    )
    with pytest.raises(ConfigError, match="unknown profile 'b'"):
        cfg.select(["b"])


def test_host_apt_mirror_reads_deb822_and_one_line_sources(tmp_path):
    d = tmp_path / "sources.list.d"
    d.mkdir()
    (d / "a.sources").write_text(
        "Types: deb-src\nURIs: https://src.example/debian\nSuites: bookworm\n\n"
        "Types: deb\n# comment\nURIs: https://mirror.example/debian\n"
        "Suites: bookworm bookworm-updates\n"
    )
    lst = tmp_path / "sources.list"
    lst.write_text("deb [arch=amd64] https://other.example/debian trixie main  # x\n")
    roots = (d, lst)
    assert (
        config.host_apt_mirror("bookworm-updates", roots=roots) == "https://mirror.example/debian"
    )
    assert config.host_apt_mirror("trixie", roots=roots) == "https://other.example/debian"
    with pytest.raises(ConfigError, match="no apt source of this host serves 'sid'"):
        config.host_apt_mirror("sid", roots=roots)


def test_host_apt_mirror_reads_deb822_as_apt_does(tmp_path):
    """A blank line of spaces ends a stanza, an inline key spans lines, a stanza can be off."""
    (tmp_path / "x.sources").write_text(
        "# the archive\nTypes: deb\nURIs: https://first.example/debian\nSuites: sid\n \t\n"
        "Types: deb\nURIs: https://off.example/debian\nSuites: bookworm\nEnabled: no\n"
        "Signed-By:\n -----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n mDMEZ\n\n"
        "Types: deb\nURIs: https://second.example/debian\nSuites: bookworm\n"
    )
    roots = (tmp_path,)
    assert config.host_apt_mirror("sid", roots=roots) == "https://first.example/debian"
    assert config.host_apt_mirror("bookworm", roots=roots) == "https://second.example/debian"
