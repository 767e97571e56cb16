"""The toy training recipe the engine, export and distributed tests share."""
TINY = ["model.name=cpn_resnet18", "model.kwargs.channels=32", "data.input_size=[64,64]",
        "train.batch_size=4", "train.epochs=2", "train.optimizer=adam", "train.lr=1e-3",
        "train.warmup_steps=2", "train.lr_schedule=cosine", "data.num_workers=0", "loss.fg_weight=10"]
