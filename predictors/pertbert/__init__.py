"""PertBERT: a BERT-like encoder pre-trained on bulk drug responses, fine-tuned on single cells."""

from predictors.pertbert.predictor import PertBERT, PertBERTNoBulk

__all__ = ["PertBERT", "PertBERTNoBulk"]
