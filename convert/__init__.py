"""edgeocr workstation side: synthetic data, CRNN training, distillation, pruning, INT8 export, evaluation."""
