"""Shiyu's task-free seq2seq core: tokenizers, the attention-free LSTM/GRU Seq2Seq model,
decoding (greedy / sampling / beam, constraint hooks, streaming), the trainer, checkpoints and
dataset helpers. Nothing in this package knows about chat, poems or tunes."""
