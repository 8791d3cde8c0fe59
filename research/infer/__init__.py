"""Inference: KV-cache prefill and decode, greedy / sampled / beam decoding, scoring and perplexity.

    model, tokenizer, config = load_run("runs/tour")
    out = generate(model, [tokenizer.encode("ROMEO:")], 64, Sampling(temperature=0.8, top_k=40), (tokenizer.eos_id,))
    print(tokenizer.decode(out.tokens[0]))
"""

from research.infer.beam import beam_generate
from research.infer.decode import Generation, generate
from research.infer.load_run import load_run
from research.infer.model import InferenceModel
from research.infer.sampling import Sampling
from research.infer.scoring import Perplexity, perplexity, sequence_loglik, token_logprobs

__all__ = ["Generation", "InferenceModel", "Perplexity", "Sampling", "beam_generate", "generate", "load_run",
           "perplexity", "sequence_loglik", "token_logprobs"]
