"""The LM task (the combination paradigm's LLM fine-tuned on transcripts): trained through ESPnet's AbsTask from the
command line, over the LLM's tokenizer or the corpus's BPE, exported as a transformers folder that scores exactly
as the trained model did."""
import pytest
import torch

from speechllm.bin import lm_train
from speechllm.bin.export_lm import export
from speechllm.models.llm import load_causal_lm, load_tokenizer, token_ids
from speechllm.tasks.causal_lm import CausalLMTask, load_lm_label_tokenizer
from speechllm.text.tokenizers import BPELabelUnits
from test_model import SENTENCES, tokens_dir  # noqa: F401 (fixture)


def sentence_logprob(llm, tokenizer, text: str) -> float:
    """log P(text + EOS | BOS) by a plain transformers causal LM, one pass."""
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    ids = [bos] + list(token_ids(tokenizer, text)) + [tokenizer.eos_token_id]
    with torch.no_grad():
        logits = llm(input_ids=torch.tensor([ids[:-1]])).logits[0].float()
    return torch.log_softmax(logits, -1).gather(1, torch.tensor(ids[1:])[:, None]).sum().item()


def train_lm(root, tokens_dir, *options):  # noqa: F811
    """collect_stats, then 3 epochs of training, through the recipe's entry point (speechllm.bin.lm_train.main) in
    this process: the demo recipe's test runs it from the command line, and a fresh interpreter importing ESPnet
    twice would add half a minute here."""
    data = root / "data"
    data.mkdir(parents=True)
    (data / "text").write_text("".join(f"utt{i:03d} {s}\n" for i, s in enumerate(SENTENCES[:48])))
    (data / "valid").write_text("".join(f"val{i:03d} {s}\n" for i, s in enumerate(SENTENCES[:6])))
    common = ["--llm_conf", f"name_or_path={tokens_dir / 'llm'}", *options,
              "--train_data_path_and_name_and_type", f"{data / 'text'},text,text",
              "--valid_data_path_and_name_and_type", f"{data / 'valid'},text,text"]
    lm_train.main([*common, "--collect_stats", "true", "--output_dir", str(root / "stats"),
                   "--train_shape_file", str(data / "text"), "--valid_shape_file", str(data / "valid")])
    lm_train.main([*common, "--output_dir", str(root / "exp"), "--max_epoch", "3", "--batch_size", "8",
                   "--optim", "adam", "--optim_conf", "lr=0.01", "--num_att_plot", "0", "--fold_length", "150",
                   "--train_shape_file", str(root / "stats/train/text_shape"),
                   "--valid_shape_file", str(root / "stats/valid/text_shape")])
    return root / "exp"


@pytest.mark.parametrize("units", ["llm", "bpe"])
def test_lm_fine_tuning_learns_and_exports_a_folder_that_scores_the_same(tokens_dir, tmp_path, units):  # noqa: F811
    options = (["--llm_conf", "finetune=lora", "--llm_conf", "lora_conf={r: 4, alpha: 8}"] if units == "llm" else
               ["--llm_conf", "finetune=frozen", "--token_type", "bpe", "--bpemodel", str(tokens_dir / "ctc_bpe.model")])
    exp = train_lm(tmp_path, tokens_dir, *options)
    model, args = CausalLMTask.build_model_from_file(str(exp / "config.yaml"), None, "cpu")
    units_tokenizer = load_lm_label_tokenizer(args)
    assert isinstance(units_tokenizer, BPELabelUnits) == (units == "bpe")
    text = SENTENCES[1]
    ids = torch.tensor([token_ids(units_tokenizer, text)])
    model.eval()
    with torch.no_grad():
        before = model(ids, torch.tensor([ids.size(1)]))[0].item()
        model.load_state_dict(torch.load(exp / "3epoch.pth", weights_only=True), strict=True)
        after = model(ids, torch.tensor([ids.size(1)]))[0].item()
    assert after < before - 5  # nats: the summed NLL of a training sentence, after 18 steps
    folder = export(str(exp / "config.yaml"), str(exp / "3epoch.pth"), str(tmp_path / "exported"))
    llm, tokenizer = load_causal_lm(str(folder), finetune="frozen").eval(), load_tokenizer(str(folder))
    assert type(tokenizer) is type(units_tokenizer) and len(tokenizer) == len(units_tokenizer)
    assert sentence_logprob(llm, tokenizer, text) == pytest.approx(-after, abs=1e-3)
    assert not any(p.name.startswith(".exported") for p in tmp_path.iterdir())  # no staging folder left


def test_lm_task_errors_name_the_option(tokens_dir):  # noqa: F811
    parser = CausalLMTask.get_parser()
    args = parser.parse_args(["--output_dir", "x", "--llm_conf", f"name_or_path={tokens_dir / 'llm'}",
                              "--model_conf", "lsm=0.1"])
    with pytest.raises(ValueError, match=r"model_conf: unknown key\(s\) \['lsm'\]"):
        CausalLMTask.build_model(args)
    args = parser.parse_args(["--output_dir", "x", "--llm_conf", f"name_or_path={tokens_dir / 'llm'}",
                              "--token_type", "bpe"])
    with pytest.raises(FileNotFoundError, match="--bpemodel: no such file"):
        CausalLMTask.build_model(args)
