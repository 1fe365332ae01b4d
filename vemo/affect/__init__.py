"""Zero-shot affect knowledge shared by extraction, training and prediction: the mapping tables
(``tables/``, data files), the experts that read each modality's pretrained outputs (``experts``),
their product (``zeroshot``) and the valence/arousal circumplex (``circumplex``)."""
