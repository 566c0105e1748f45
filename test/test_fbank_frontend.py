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


def test_an_utterance_ending_near_the_longest_adds_no_frames():
    # The second utterance's reflection runs past the batch's width: the batch is widened to reflect it, but the
    # features keep max(lengths) frames, the width the encoder's masks are made for (a mismatch stopped training).
    torch.manual_seed(0)
    waves = [torch.randn(16000), torch.randn(16000 - 100)]
    batch = torch.nn.utils.rnn.pad_sequence(waves, batch_first=True)
    feats, feat_lengths = FbankFrontend(n_mels=40).eval()(batch, torch.tensor([16000, 15900]))
    assert feats.size(1) == int(feat_lengths.max()) == 16000 // 128 + 1  # hop 128 by default: centred frames
