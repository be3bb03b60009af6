"""Reference trainer (ResNet-50, Horovod / torch.distributed) and its evaluation."""
