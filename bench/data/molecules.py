"""Molecules of the generated drugs, made in code: one ring scaffold per drug family, decorated with
seeded substituents, so siblings share a Bemis-Murcko scaffold and differ in their side chains.

The embedded benchmark reads no file, so it cannot carry a real drug table; procedural molecules
still give a structure-aware predictor real chemistry to read (valid, drug-like SMILES whose Morgan
fingerprints are similar within a family and partly similar across). `structure_coefficients` is
the smooth map from a fingerprint to programme coefficients that the generator mixes into each
drug's effect (`SyntheticConfig.structure_weight`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from bench.errors import BenchError

# One scaffold per family: a SMILES template whose {0}, {1}, {2} are attachment points (on an
# aromatic carbon, "a", or on an sp3 carbon or ring nitrogen, "s"). Side chains are acyclic, so the
# Bemis-Murcko scaffold of every decorated molecule is the template's.
SCAFFOLDS: tuple[tuple[str, str], ...] = (
    ("c1cc{0}c2ncnc(Nc3ccc{1}c{2}c3)c2c1", "aaa"),  # 4-anilinoquinazoline
    ("c1cc(-c2ccnc(Nc3ccc{0}c{1}c3)n2)c{2}nc1", "aaa"),  # 2-anilino-4-(3-pyridyl)pyrimidine
    ("O=C(Nc1ccc{0}cc1)c1cc2cc{1}cc{2}c2[nH]1", "aaa"),  # indole-2-carboxanilide
    ("c1cc{0}c2nc(-c3ccc{1}c{2}c3)[nH]c2c1", "aaa"),  # 2-arylbenzimidazole
    ("c1cc{0}c{1}cc1N1CCN{2}CC1", "aas"),  # arylpiperazine
    ("O=S(=O)(Nc1ccc{0}cc1)c1ccc{1}c{2}c1", "aaa"),  # diaryl sulfonamide
    ("c1nc{0}c2c(-c3ccc{1}cc3)nn(C3CCN{2}CC3)c2n1", "aas"),  # pyrazolo[3,4-d]pyrimidine
    ("c1ccc2nc{0}cc(Nc3ccc{1}c{2}c3)c2c1", "aaa"),  # 4-anilinoquinoline
    ("O=C(Nc1ncc{0}s1)c1ccc{1}c{2}c1", "aaa"),  # 2-benzamidothiazole
    ("O=C(Nc1ccc{0}cc1)Nc1ccc{1}c{2}c1", "aaa"),  # diaryl urea
    ("O=c1cc{0}c2ccc{1}c{2}c2o1", "aaa"),  # coumarin
    ("O=C1CN=C(c2ccc{0}cc2)c2cc{1}ccc2N1{2}", "aas"),  # 5-aryl-1,4-benzodiazepin-2-one
    ("c1nc2c(NCc3ccc{0}c{1}c3)ncnc2n1C1CCN{2}C1", "aas"),  # 6-benzylaminopurine
    ("O=c1cc(-c2ccc{0}cc2)oc2cc{1}cc{2}c12", "aaa"),  # flavone
    ("c1cc{0}c2c(c1)CCN(C(=O)c1ccc{1}c{2}c1)C2", "aaa"),  # N-aroyl tetrahydroisoquinoline
    ("O=C(c1cc2cc{0}ccc2s1)N1CCC{1}(c2ccc{2}cc2)CC1", "asa"),  # benzothiophene-2-carbonyl piperidine
    ("c1cc{0}c2[nH]nc(-c3ccc{1}c{2}c3)c2c1", "aaa"),  # 3-arylindazole
    ("O=C1Nc2ccc{0}cc2C1=Cc1cc{1}c{2}[nH]1", "aaa"),  # 3-(pyrrol-2-ylmethylidene)oxindole
    ("c1cc{0}ccc1-c1noc(-c2ccc{1}c{2}c2)n1", "aaa"),  # 3,5-diaryl-1,2,4-oxadiazole
    ("c1cc(-c2nc(N3CCOCC3)c3cc{1}ccc3n2)cc{0}c1{2}", "aaa"),  # 2-aryl-4-morpholinoquinazoline
    ("c1cc{0}n2cc(-c3ccc{1}c{2}c3)nc2c1", "aaa"),  # 2-arylimidazo[1,2-a]pyridine
    ("c1ccc2c(c1)[nH]c1cc{0}c(OCCN3CCN{1}CC3)c{2}c12", "asa"),  # carbazole piperazinylethyl ether
    ("O=C(c1ccc{0}c{1}c1)N1CCC(c2ccc{2}cc2)C1", "aaa"),  # 3-arylpyrrolidine benzamide
    ("c1cc{0}ccc1Cn1cc(-c2ccc{1}c{2}c2)nn1", "aaa"),  # 1-benzyl-4-aryl-1,2,3-triazole
)
# Acyclic side chains, written from their attaching atom.
SUBSTITUENTS = {
    "a": ("F", "Cl", "Br", "C", "CC", "OC", "OCC", "C(F)(F)F", "OC(F)(F)F", "C#N", "N", "NC", "N(C)C", "O",
          "C(N)=O", "C(=O)NC", "C(=O)O", "S(C)(=O)=O", "S(N)(=O)=O", "NC(C)=O", "C(C)C", "CO", "CN(C)C", "SC"),
    "s": ("C", "CC", "C(C)C", "CCO", "CCOC", "C(C)=O", "C(=O)OC", "S(C)(=O)=O", "CC(F)(F)F", "CC#N", "CCN(C)C",
          "C(N)=O"),
}
HYDROGEN_SHARE = 0.35  # chance that an attachment point keeps its hydrogen
MAX_DRAWS = 1000  # draws per drug before a family's molecules are declared exhausted


def _quiet_rdkit():
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    return Chem


def generated_molecules(n_drugs: int, family: np.ndarray, seed: int | Sequence[int]) -> list[str]:
    """Canonical SMILES of `n_drugs` distinct molecules, drug i decorating the scaffold of its family
    `family[i]` with substituents drawn by a generator seeded with `seed` (deterministic)."""
    family = np.asarray(family)
    if family.shape != (n_drugs,):
        raise BenchError(f"family has shape {family.shape}: expected one family index per drug ({n_drugs},)")
    if n_drugs and not 0 <= int(family.min()) <= int(family.max()) < len(SCAFFOLDS):
        raise BenchError(f"drug families {int(family.min())}..{int(family.max())}: expected indices 0..{len(SCAFFOLDS) - 1} "
                         f"(one molecule scaffold each, so at most n_families={len(SCAFFOLDS)})")
    chem = _quiet_rdkit()
    rng = np.random.default_rng(seed)
    seen: set[str] = set()
    out = []
    for i, f in enumerate(family):
        template, kinds = SCAFFOLDS[int(f)]
        for _ in range(MAX_DRAWS):
            groups = [SUBSTITUENTS[k][rng.integers(len(SUBSTITUENTS[k]))] for k in kinds]
            kept = rng.random(len(kinds)) >= HYDROGEN_SHARE
            mol = chem.MolFromSmiles(template.format(*(f"({g})" if keep else "" for g, keep in zip(groups, kept))))
            smiles = chem.MolToSmiles(mol)
            if smiles not in seen:
                break
        else:
            raise BenchError(f"drug {i} (family {int(f)}): no new molecule after {MAX_DRAWS} draws; "
                             "expected fewer drugs per family")
        seen.add(smiles)
        out.append(smiles)
    return out


def fingerprint_bits(smiles: Sequence[str], radius: int = 2, n_bits: int = 2048) -> sp.csr_matrix:
    """Morgan fingerprints (`radius`, `n_bits`) as a sparse float32 0/1 matrix, one row per SMILES;
    sparse because a molecule sets a few dozen of the bits."""
    if radius < 0 or n_bits < 1:
        raise BenchError(f"Morgan fingerprint radius {radius}, {n_bits} bits: expected radius >= 0 and bits >= 1")
    chem = _quiet_rdkit()
    from rdkit.Chem import rdFingerprintGenerator

    generator = rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=n_bits)
    columns, counts = [], []
    for i, s in enumerate(smiles):
        mol = chem.MolFromSmiles(s) if isinstance(s, str) and s.strip() else None
        if mol is None:
            raise BenchError(f"SMILES {s!r} (entry {i}): not readable by RDKit; expected a valid SMILES")
        on = np.asarray(list(generator.GetFingerprint(mol).GetOnBits()), dtype=np.int32)
        columns.append(on)
        counts.append(on.size)
    indptr = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)])
    indices = np.concatenate(columns) if columns else np.zeros(0, dtype=np.int32)
    return sp.csr_matrix((np.ones(indices.size, dtype=np.float32), indices, indptr), shape=(len(counts), n_bits))


def morgan_fingerprints(smiles: Sequence[str], radius: int = 2, n_bits: int = 2048) -> np.ndarray:
    """Morgan fingerprints (`radius`, `n_bits`) as a dense float32 0/1 matrix, one row per SMILES:
    the structure input of structure-aware predictors."""
    return fingerprint_bits(smiles, radius, n_bits).toarray()


def tanimoto(a: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """Tanimoto similarities of the rows of 0/1 fingerprint matrices `a` and `b` (default `a`):
    shared bits over bits set in either (1 for two empty fingerprints)."""
    a = np.asarray(a, dtype=np.float64)
    b = a if b is None else np.asarray(b, dtype=np.float64)
    shared = a @ b.T
    either = a.sum(axis=1)[:, None] + b.sum(axis=1)[None, :] - shared
    return np.divide(shared, either, out=np.ones_like(shared), where=either > 0)


def _centred(bits: sp.csr_matrix) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    """Fingerprints as float64 CSR, their mean over molecules, and 1 / the length of each centred
    fingerprint: row i of (bits - mean) * scale is molecule i's centred, unit-length fingerprint."""
    bits = sp.csr_matrix(bits, dtype=np.float64)
    centre = np.asarray(bits.mean(axis=0)).ravel()
    squared = np.asarray(bits.sum(axis=1)).ravel() - 2.0 * (bits @ centre) + np.sum(centre * centre)
    length = np.sqrt(np.maximum(squared, 0.0))
    return bits, centre, 1.0 / np.where(length > 0, length, 1.0)


def structure_basis(bits: sp.csr_matrix, n_components: int) -> tuple[np.ndarray, np.ndarray]:
    """Principal scores (molecules, r) and variances (r,) of the centred, unit-length fingerprints,
    r <= `n_components` axes of non-zero variance: the k-dimensional picture of the molecules that
    keeps their pairwise similarities best (scores @ scores.T is the best rank-r Gram matrix)."""
    bits, centre, scale = _centred(bits)
    n, n_bits = bits.shape
    if n <= n_bits:  # the molecules' Gram matrix is the smaller eigenproblem
        unit = (bits.toarray() - centre) * scale[:, None]
        values, vectors = np.linalg.eigh(unit @ unit.T)
    else:  # the bits' covariance, from sparse products (no dense molecules x bits matrix)
        weighted = sp.diags(scale**2) @ bits
        cross = np.asarray(weighted.sum(axis=0)).ravel()
        gram = (bits.T @ weighted).toarray() - np.outer(cross, centre) - np.outer(centre, cross)
        values, axes = np.linalg.eigh(gram + np.sum(scale**2) * np.outer(centre, centre))
    top = np.argsort(values)[::-1][:n_components]
    top = top[values[top] > 1e-9 * max(values.max(), 1e-300)]
    if n <= n_bits:
        return vectors[:, top] * np.sqrt(values[top]), values[top]
    scores = scale[:, None] * (np.asarray(bits @ axes[:, top]) - centre @ axes[:, top])
    return scores, values[top]


def structure_coefficients(bits: sp.csr_matrix, n_programs: int, seed: int | Sequence[int],
                           basis: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """A smooth (linear) map of fingerprints to programme coefficients (molecules, n_programs): the
    molecules' principal scores (`structure_basis`, passed in to reuse it) turned by the seeded
    rotation nearest to `n_programs` Gaussian directions, so two molecules' coefficients are as
    similar as their centred fingerprints allow in that many dimensions."""
    scores, variances = basis if basis is not None else structure_basis(bits, n_programs)
    if scores.shape[1] == 0:  # fewer than two distinct molecules: nothing to tell them apart
        return np.zeros((bits.shape[0], n_programs))
    bits, centre, scale = _centred(bits)
    directions = np.random.default_rng(seed).normal(0.0, 1.0, (bits.shape[1], n_programs))
    projected = scale[:, None] * (np.asarray(bits @ directions) - centre @ directions)
    # The directions as seen along the principal axes, made orthonormal (polar factor): a rotation
    # that does not depend on how an eigensolver signs or mixes axes of equal variance.
    left, _, right = np.linalg.svd((scores.T @ projected) / variances[:, None], full_matrices=False)
    return scores @ (left @ right)
