"""Inference: loading models, the predictor (TTA, cascade, ensembles), export, quantization, evaluation."""
