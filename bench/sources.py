"""The public data sets `bench fetch` knows by name: each a short list of files (URL, final name,
published checksum where one exists, whether it is served gzipped), where they come from and their
licence; and where fetched data goes by default."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from bench.errors import BenchError, closest


@dataclass(frozen=True)
class RemoteFile:
    """One file of a source: its URL, its final name on disk, and how it is checked.

    `checksum` is "algorithm:hex" of the bytes as served (for a gzipped file: of the .gz); `size`
    and `unpacked_size` are approximate byte counts, used only for `--list` and the disk-space check.
    """

    url: str
    name: str
    checksum: str | None = None
    gunzip: bool = False
    size: int | None = None
    unpacked_size: int | None = None

    @property
    def served_name(self) -> str:
        """The name of the file as served (the final name plus .gz for a gzipped file)."""
        return self.name + ".gz" if self.gunzip else self.name


@dataclass(frozen=True)
class Source:
    """A named data set: its files, where it comes from, how it is checked, its licence.

    `checksums` is a published list of sha512 sums (GNU `sha512sum` format, as GEO serves them),
    fetched before the data files; files with no checksum of their own are checked against it.
    """

    name: str
    description: str
    files: tuple[RemoteFile, ...]
    origin: str
    checksum_note: str
    licence: str
    checksums: RemoteFile | None = None


_ZENODO = "https://zenodo.org/records/13350497/files/"
# chemCPA pinned to a commit of its main branch (2025-01-31), so the sha256 of each table holds.
_CHEMCPA = "https://raw.githubusercontent.com/theislab/chemCPA/43e830eb0958c54e4aa64442c17ec0fed19b3f15/embeddings/"

def _geo_level5(name: str, series: str, phase: str, shape: str, dated: str, matrix: str,
                info_sizes: tuple[int, int, int], matrix_sizes: tuple[int, int], sums_size: int) -> Source:
    """A GEO L1000 Level 5 series: its gzipped sig/gene/pert_info side-cars (`dated`: the suffix of
    their names) and GCTX matrix, checked against the series' SHA512SUMS file."""
    base = f"https://ftp.ncbi.nlm.nih.gov/geo/series/{series[:-3]}nnn/{series}/suppl/{series}_"
    infos = tuple(RemoteFile(f"{base}Broad_LINCS_{kind}_info{dated}.txt.gz", f"{series}_Broad_LINCS_{kind}_info{dated}.txt",
                             gunzip=True, size=size) for kind, size in zip(("sig", "gene", "pert"), info_sizes))
    gctx = RemoteFile(f"{base}Broad_LINCS_{matrix}.gctx.gz", f"{series}_Broad_LINCS_{matrix}.gctx", gunzip=True,
                      size=matrix_sizes[0], unpacked_size=matrix_sizes[1])
    return Source(name, f"LINCS L1000 {phase} Level 5 signatures ({shape}) with sig/gene/pert info", (*infos, gctx),
                  origin=f"NCBI GEO {series} supplementary files", checksum_note=f"sha512 from {series}_SHA512SUMS.txt.gz",
                  licence="GEO: no use restrictions from NCBI; cite Subramanian et al. 2017 (Cell)",
                  checksums=RemoteFile(f"{base}SHA512SUMS.txt.gz", f"{series}_SHA512SUMS.txt", gunzip=True, size=sums_size))


SOURCES: dict[str, Source] = {s.name: s for s in (
    Source(
        "sciplex3", "sci-Plex3 single-cell screen (3 cell lines, 188 drugs, 4 doses), scPerturb v1.4 h5ad",
        (RemoteFile(_ZENODO + "SrivatsanTrapnell2020_sciplex3.h5ad?download=1", "SrivatsanTrapnell2020_sciplex3.h5ad",
                    checksum="md5:c9e70629505d98c7ca1a837f62b14e89", size=2_526_631_614),),
        origin="Zenodo record 13350497 (scPerturb v1.4)",
        checksum_note="md5 of the Zenodo record, as other projects pin it",
        licence="CC BY 4.0; cite Srivatsan et al. 2020 (Science) and Peidli et al. 2024 (scPerturb, Nat. Methods)",
    ),
    _geo_level5("lincs-gse92742-level5", "GSE92742", "phase I", "473,647 x 12,328", "",
                "Level5_COMPZ.MODZ_n473647x12328", (10_600_000, 212_000, 1_100_000),
                (21_328_033_748, 23_380_287_022), 1_400),
    _geo_level5("lincs-gse70138-level5", "GSE70138", "phase II", "118,050 x 12,328", "_2017-03-06",
                "Level5_COMPZ_n118050x12328_2017-03-06", (1_943_865, 216_692, 82_376),
                (5_365_179_698, 5_824_120_558), 1_071),
    Source(
        "drug-smiles", "chemCPA's drug tables: sci-Plex3 drug names and LINCS pert_ids with SMILES",
        (RemoteFile(_CHEMCPA + "trapnell_drugs_smiles.csv", "trapnell_drugs_smiles.csv", size=14_213,
                    checksum="sha256:3fe1296157f35d19baf9c3cd80df08a4894a9d3fc6d8695cd0da868d41c26dcc"),
         RemoteFile(_CHEMCPA + "lincs_drugs_smiles.csv", "lincs_drugs_smiles.csv", size=1_451_659,
                    checksum="sha256:d9e719bc811b8b9ad3882140c3b422b3e65f4fbc16e7302cc96c90a213978cb2")),
        origin="github.com/theislab/chemCPA, commit 43e830e",
        checksum_note="sha256 of the files at the pinned commit",
        licence="MIT (chemCPA); cite Hetzel et al. 2022 (chemCPA, NeurIPS)",
    ),
)}


def default_root() -> Path:
    """Where fetched data goes without --dest: $BENCH_DATA, else $XDG_CACHE_HOME/bench or ~/.cache/bench."""
    if os.environ.get("BENCH_DATA"):
        return Path(os.environ["BENCH_DATA"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache).expanduser() / "bench"


def get_source(name: str) -> Source:
    """The registered source called `name`, or a one-line error naming the closest one."""
    if name not in SOURCES:
        raise BenchError(f"unknown source '{name}'{closest(name, SOURCES)}; `bench fetch --list` shows them")
    return SOURCES[name]


def human_size(n: int | None) -> str:
    """A byte count for people (1.2 GiB); '?' when unknown."""
    if n is None:
        return "?"
    size, units = float(n), ["B", "KiB", "MiB", "GiB", "TiB"]
    while size >= 1024 and len(units) > 1:
        size, units = size / 1024, units[1:]
    return f"{n} B" if units[0] == "B" else f"{size:.1f} {units[0]}"
