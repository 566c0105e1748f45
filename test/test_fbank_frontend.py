"""The filterbank frontend gives each utterance the features it has alone, whatever else is in its batch."""
import torch
from espnet2.asr.frontend.default import DefaultFrontend

from speechllm.models.fbank_frontend import FbankFrontend


def test_features_of_an_utterance_do_not_depend_on_its_batch():
    torch.manual_seed(0)
    waves = [torch.randn(n) for n in (8000, 20800, 14400, 300)]
    lengths = torch.tensor([len(w) for w in waves])
    batch = torch.nn.utils.rnn.pad_sequence(waves, batch_first=True)
    kept = batch.clone()
    for cls, invariant in ((FbankFrontend, True), (DefaultFrontend, False)):
        frontend = cls(n_mels=40).eval()
        feats, feat_lengths = frontend(batch, lengths)
        worst = 0.0
        for i, wave in enumerate(waves):
            alone, alone_lengths = frontend(wave[None], lengths[i: i + 1])
            assert feat_lengths[i] == alone_lengths[0]
            worst = max(worst, (feats[i, : alone_lengths[0]] - alone[0]).abs().max().item())
        assert (worst < 1e-4) == invariant, (cls.__name__, worst)  # ESPnet's own differs at the last frames
    assert torch.equal(batch, kept)  # the caller's batch is left as it was
