"""Request-level (static) batching inside our own engine: the fair baseline (`engine: request`).

Same model code, kernels, KV pool and sampling as the iteration-level engine; only the
scheduling differs, as in the systems Orca compares against (FasterTransformer): when nothing
runs, up to `max_batch_size` waiting requests are admitted together (FCFS, as many as the pool
holds for every member at the batch's longest output), prefilled in one iteration whatever the
token budget, and decoded together. A member that has finished keeps its slot and is computed
like the padding of a static batch (its extra tokens are discarded) until every member is done;
then all are returned at once (`finish_ns`: the end of the batch) and the next batch is
admitted. Token times are stamped as generated, exactly as in the iteration-level engine.
Prompts are not padded (our flat batch has no padding), which favours this baseline.
"""
from __future__ import annotations

from tenancy.serving.block_manager import cdiv
from tenancy.serving.scheduler import Batch, Scheduler
from tenancy.serving.sequence import Sequence


class RequestScheduler(Scheduler):
    def schedule(self, now_ns: int) -> Batch:
        if not self.running:
            self._admit_batch(now_ns)
        batch = Batch()
        for seq in self.running:
            batch.seqs.append(seq)
            batch.num_new.append(seq.num_tokens - seq.num_computed)
        return batch

    def _admit_batch(self, now_ns: int) -> None:
        """The longest FCFS prefix whose members all fit at the batch's longest output."""
        bs, members, longest = self.bm.block_size, [], 0
        for seq in list(self.waiting)[:self.max_batch_size]:
            longest_if = max(longest, seq.max_new_tokens)
            need = sum(cdiv(s.prompt_len + longest_if, bs) for s in members + [seq])
            if need > self.bm.num_free:
                break
            members.append(seq)
            longest = longest_if
        for seq in members:
            self.waiting.popleft()
            if not self.bm.ensure(seq, seq.prompt_len + longest):  # counted above: cannot happen
                raise RuntimeError("request-level batch does not fit the pool it was sized for")
            self._admit(seq, now_ns)

    def postprocess(self, batch: Batch, tokens: list[int], now_ns: int) -> list[Sequence]:
        t = 0
        for seq, n in zip(batch.seqs, batch.num_new):
            seq.num_computed += n
            if seq.num_computed == seq.num_tokens:
                if seq.done:
                    seq.token_ids.append(tokens[t])  # padding: computed, never returned
                else:
                    seq.append_token(tokens[t], now_ns)
                t += 1
        if not all(s.done for s in self.running):
            return []
        finished, self.running = self.running, []
        for seq in finished:
            del seq.token_ids[seq.prompt_len + len(seq.token_ns):]  # drop the padding tokens
            seq.finish_ns = now_ns
            self.bm.free(seq)
        return finished
