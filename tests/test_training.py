"""The one training path: the restored weights are those of the best validation epoch."""

from __future__ import annotations

import logging

import numpy as np
import torch

import multiomix as mx
from multiomix.models.base import modality_key


def _validation_loss(model, rows) -> float:
    loader = model._make_data_loader(adata=model.adata, indices=rows, batch_size=len(rows))
    model.module.eval()
    with torch.no_grad():
        for tensors in loader:
            _, _, out = model.module(tensors)
            return float(out.loss)
    raise AssertionError("no rows")


def test_restored_weights_are_those_of_the_best_validation_epoch():
    mdata = mx.datasets.synthetic_interaction_mudata(300, n_features={"rna": 20, "methylation": 20, "mirna": 10})
    model = mx.tl.fit_crossattomics(mdata, max_epochs=25, early_stopping_patience=50, lr=1e-2, batch_size=300,
                                    validation_size=0.3, linear_path=None, progress_bar=False)
    history = mdata.uns["crossattomics"]["history"]["validation_loss"].to_numpy()
    assert np.argmin(history) < len(history) - 1, "the check needs a best epoch before the last"
    rows = model.validation_indices
    assert _validation_loss(model, rows) == np.float32(history.min()) or np.isclose(
        _validation_loss(model, rows), history.min(), rtol=1e-4)
    assert modality_key("rna") in model.adata_manager.data_registry


def test_the_epoch_loss_is_the_class_weighted_mean_whatever_the_batch_size():
    # imbalanced classes, validation over several minibatches: the logged loss of the kept epoch is the
    # class-weighted cross-entropy over all validation rows (a mean of batch means by batch size is not)
    mdata = mx.datasets.synthetic_interaction_mudata(300, n_features={"rna": 20, "methylation": 20, "mirna": 10})
    rng = np.random.default_rng(0)
    mdata.obs["label"] = np.where(rng.random(mdata.n_obs) < 0.15, "pos", "neg")
    model = mx.tl.fit_crossattomics(mdata, max_epochs=12, early_stopping_patience=50, lr=3e-3, batch_size=16,
                                    validation_size=0.4, linear_path=None, progress_bar=False, baseline=False)
    weight = model.module.class_weight
    assert weight is not None and weight.max() > 2 * weight.min()  # the check needs uneven class weights
    history = mdata.uns["crossattomics"]["history"]["validation_loss"].to_numpy()
    np.testing.assert_allclose(_validation_loss(model, model.validation_indices), history.min(), rtol=1e-4)


def test_the_weights_before_training_compete_when_the_model_starts_from_a_fitted_linear_model():
    mdata = mx.datasets.synthetic_interaction_mudata(300, n_features={"rna": 20, "methylation": 20, "mirna": 10})
    model = mx.tl.fit_crossattomics(mdata, max_epochs=25, early_stopping_patience=50, lr=1e-2, batch_size=300,
                                    validation_size=0.3, progress_bar=False)
    history = mdata.uns["crossattomics"]["history"]["validation_loss"].to_numpy()
    restored = _validation_loss(model, model.validation_indices)
    assert model.best_epoch_ == mdata.uns["crossattomics"]["best_epoch"]
    if model.best_epoch_ >= 0:
        assert np.isclose(restored, history[model.best_epoch_], rtol=1e-4)
    else:  # the logistic regression alone: its validation loss is below every epoch's
        assert restored <= history.min() + 1e-6


def test_rows_are_positions_or_a_mask_and_bad_rows_say_so():
    import pytest

    from multiomix.train import resolve_rows

    mask = np.arange(10) < 7
    train, validation, rest = resolve_rows(10, mask, ~mask, validation_size=0.1, random_state=0)
    assert train.tolist() == list(range(7)) and validation.tolist() == [7, 8, 9] and rest.size == 0
    train, _, rest = resolve_rows(10, [5, 1, 3], [0], validation_size=0.1, random_state=0)
    assert train.tolist() == [1, 3, 5] and rest.tolist() == [2, 4, 6, 7, 8, 9]
    for bad, error, match in [(np.ones(4, bool), ValueError, "boolean mask of shape"),
                              ([0.5, 1.5], TypeError, "integer row positions"),
                              (["cell1"], TypeError, "integer row positions"),
                              ([-1, 2], IndexError, "outside 0..9"), ([3, 3], ValueError, "repeats")]:
        with pytest.raises(error, match=match):
            resolve_rows(10, bad, None, validation_size=0.1, random_state=0)
    with pytest.raises(ValueError, match="in both"):
        resolve_rows(10, [1, 2], [2, 3], validation_size=0.1, random_state=0)


def test_a_misspelt_option_is_named_before_training_and_the_object_is_untouched(tmp_path):
    import pytest

    mdata = mx.datasets.synthetic_interaction_mudata(80, n_features={"rna": 10, "methylation": 10, "mirna": 5})
    before = (set(mdata.obs.columns), set(mdata.obsm.keys()), set(mdata.uns.keys()))
    with pytest.raises(TypeError, match=r"\['max_epoch'\]"):
        mx.tl.fit_crossattomics(mdata, max_epoch=2, progress_bar=False)
    with pytest.raises(TypeError, match=r"\['test_size'\]"):  # an option other fits have
        mx.tl.fit_multimodal_ae(mdata, test_size=0.2, max_epochs=1, progress_bar=False, n_models=1)
    with pytest.raises(TypeError, match=r"gradient_clip_val.*plan_kwargs=\{'gradient_clip'"):  # UnitedNet clips itself
        mx.tl.fit_unitednet(mdata, label_key="label", max_epochs=1, progress_bar=False, gradient_clip_val=1.0)
    assert before == (set(mdata.obs.columns), set(mdata.obsm.keys()), set(mdata.uns.keys()))
    model = mx.tl.fit_crossattomics(mdata, max_epochs=1, progress_bar=False, gradient_clip_val=1.0)  # Lightning's
    model.save(tmp_path / "model")
    with pytest.raises(ValueError, match="needs `adata=`"):
        mx.models.CrossAttOmics.load(tmp_path / "model")
    loaded = mx.models.CrossAttOmics.load(tmp_path / "model", adata=mdata)
    np.testing.assert_allclose(loaded.predict_proba(mdata).to_numpy(), model.predict_proba(mdata).to_numpy(),
                               atol=1e-6)


def test_verbosity_none_follows_scanpy_as_it_changes():
    """``mx.settings.verbosity = None`` reads scanpy's verbosity at each message, not once when it is set."""
    import scanpy as sc

    from multiomix._logging import logger

    old_sc, old_mx = sc.settings.verbosity, mx.settings.verbosity
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    handler = Keep(level=logging.DEBUG)
    logger.addHandler(handler)
    try:
        sc.settings.verbosity = "info"
        mx.settings.verbosity = None
        sc.settings.verbosity = "error"
        logger.info("hidden")
        sc.settings.verbosity = "info"
        logger.info("shown")
        mx.settings.verbosity = 0
        logger.info("hidden too")
        logger.error("an error")
    finally:
        logger.removeHandler(handler)
        sc.settings.verbosity, mx.settings.verbosity = old_sc, old_mx
    assert records == ["shown", "an error"]


def test_every_train_call_trains_in_train_mode_and_train_size_is_honoured():
    """Scoring leaves the module in eval mode; a later train() must not run without dropout / with frozen
    BatchNorm. scvi-tools' ``train_size`` sets the validation share; options the runner replaces are refused."""
    import lightning.pytorch as pl
    import pytest

    mdata = mx.datasets.synthetic_interaction_mudata(120, n_features={"rna": 10, "methylation": 10, "mirna": 5})
    mx.models.CrossAttOmics.setup_mudata(mdata, label_key="label")
    model = mx.models.CrossAttOmics(mdata, linear_path=None)
    modes = []

    class Record(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            modes.append(pl_module.module.training)

    quiet = {"accelerator": "cpu", "progress_bar": False}
    model.train(1, callbacks=[Record()], **quiet)
    model.predict_proba()  # eval mode
    model.train(1, callbacks=[Record()], **quiet)
    assert modes and all(modes)
    model.train(1, train_size=0.5, **quiet)
    assert len(model.validation_indices) == 60
    with pytest.raises(TypeError, match=r"\['shuffle_set_split'\] would be ignored"):
        model.train(1, shuffle_set_split=False, **quiet)
    with pytest.raises(ValueError, match="cannot be combined"):
        model.train(1, train_size=0.5, train_indices=np.arange(60), **quiet)
    model.train(1, train_size=0.5, validation_size=0.5, **quiet)  # the same share twice is fine
    with pytest.raises(ValueError, match="train_size=0.5 and validation_size=0.1 disagree"):
        model.train(1, train_size=0.5, validation_size=0.1, **quiet)
    with pytest.raises(ValueError, match="pass strategy='ddp'"):
        model.train(1, devices=2, **quiet)


def test_bad_training_options_are_refused_before_training():
    """Options that would fail deep in the engine, be misread by Lightning or go unrecorded get a clear error."""
    import pytest

    mdata = mx.datasets.synthetic_interaction_mudata(60, n_features={"rna": 10, "methylation": 10, "mirna": 5})
    mx.models.CrossAttOmics.setup_mudata(mdata, label_key="label")
    model = mx.models.CrossAttOmics(mdata, linear_path=None)
    quiet = {"accelerator": "cpu", "progress_bar": False}
    cases = [({"batch_size": 0}, ValueError, "batch_size must be a whole number >= 1"),
             ({"batch_size": 1}, ValueError, "BatchNorm.*at least 2"),
             ({"max_epochs": -1}, ValueError, "max_epochs must be a whole number >= 0"),
             ({"max_epochs": 2.5}, ValueError, "max_epochs must be"),
             ({"plan_kwargs": {"lr": 0.5}}, TypeError, "Pass lr= "),
             ({"strategy": "ddp_spawn", "devices": 2}, ValueError, "ddp_notebook")]
    for options, error, message in cases:
        with pytest.raises(error, match=message):
            model.train(**{"max_epochs": 1, **quiet, **options})
    fitted = mdata.copy()
    with pytest.raises(TypeError, match="Pass lr=, weight_decay="):
        mx.tl.fit_crossattomics(fitted, label_key="label", max_epochs=1, plan_kwargs={"lr": 0.5, "weight_decay": 0},
                                **quiet)
    with pytest.raises(ValueError, match="pass validation_size="):
        mx.tl.fit_crossattomics(fitted, label_key="label", max_epochs=1, train_size=0.5, **quiet)
    assert "crossattomics" not in fitted.uns


def test_settings_validate_values():
    import pytest
    import torch

    before = (mx.settings.verbosity, mx.settings.progress_bar, torch.get_num_threads())
    try:
        for value in (True, 2.0, "info", 4):
            with pytest.raises(ValueError, match="verbosity must be"):
                mx.settings.verbosity = value
        with pytest.raises(ValueError, match="progress_bar must be True or False"):
            mx.settings.progress_bar = "no"
        for value in (0, 1.5, True, "2"):
            with pytest.raises(ValueError, match="num_threads must be a whole number"):
                mx.settings.num_threads = value
        mx.settings.verbosity, mx.settings.progress_bar, mx.settings.num_threads = 1, False, 1
        assert torch.get_num_threads() == 1
        assert repr(mx.settings) == "multiomix settings: verbosity=1, progress_bar=False, num_threads=1"
    finally:
        mx.settings.verbosity, mx.settings.progress_bar, mx.settings.num_threads = before


def test_a_trained_model_trains_on_from_its_weights_and_an_untrained_one_refuses_to_score(tmp_path):
    """A second train() keeps what the first fit took from its rows (standardiser, the fitted linear path, the
    deep part, decoder biases): max_epochs=0 changes nothing. Scoring before training is an error."""
    import pytest

    mdata = mx.datasets.synthetic_interaction_mudata(160, n_features={"rna": 10, "methylation": 10, "mirna": 5})
    quiet = {"accelerator": "cpu", "progress_bar": False}
    mx.models.CrossAttOmics.setup_mudata(mdata, label_key="label")
    model = mx.models.CrossAttOmics(mdata, group_sizes=(4,), hidden=(16,))
    with pytest.raises(RuntimeError, match="untrained model"):
        model.predict_proba()
    with pytest.raises(RuntimeError, match="untrained model"):
        model.get_latent_representation()
    model.train(3, lr=1e-2, early_stopping=False, **quiet)
    before = model.predict_proba().to_numpy()
    state = {k: v.clone() for k, v in model.module.state_dict().items()}
    assert model.module.net.head.out.weight.abs().sum() > 0  # the deep part was trained and kept
    model.train(0, **quiet)
    np.testing.assert_array_equal(model.predict_proba().to_numpy(), before)
    model.train(1, lr=1e-2, early_stopping=False, **quiet)
    after = model.module.state_dict()
    for name in ("standardizer.mean0", "standardizer.std2", "net.linear.weight"):
        torch.testing.assert_close(after[name], state[name])  # frozen and fitted once
    assert not torch.equal(after["net.head.out.weight"], state["net.head.out.weight"])  # trained on, not reset
    assert len(model.history["train_loss"]) == 4  # 3 + 0 + 1 epochs

    ae_data = mx.datasets.synthetic_interaction_mudata(120, n_features={"rna": 10, "methylation": 10, "mirna": 5})
    mx.models.MultimodalAE.setup_mudata(ae_data)
    ae = mx.models.MultimodalAE(ae_data, latent_dim=4)
    ae.train(2, **quiet)
    latent = ae.get_latent_representation()
    ae.train(0, **quiet)
    np.testing.assert_array_equal(ae.get_latent_representation(), latent)
    with pytest.raises(FileNotFoundError, match="does not exist: CrossAttOmics.load reads the folder"):
        mx.models.CrossAttOmics.load(str(tmp_path / "typo"), adata=mdata)
    model.save(str(tmp_path / "saved"))
    with pytest.raises(ValueError, match="needs `adata=`"):
        mx.models.CrossAttOmics.load(str(tmp_path / "saved"))
    model.view_anndata_setup()  # scvi-tools' table of the registered fields


def test_building_and_training_keep_the_user_s_global_random_state():
    """Fits seed torch's and NumPy's global generators for themselves and give the user's states back."""
    mdata = mx.datasets.synthetic_interaction_mudata(60, n_features={"rna": 10, "methylation": 10, "mirna": 5})

    def draws() -> tuple[float, float]:
        return float(np.random.rand()), float(torch.rand(1))

    np.random.seed(123)
    torch.manual_seed(123)
    expected = draws()
    np.random.seed(123)
    torch.manual_seed(123)
    mx.models.CrossAttOmics.setup_mudata(mdata, label_key="label")
    model = mx.models.CrossAttOmics(mdata, random_state=0)
    model.train(max_epochs=2, progress_bar=False)
    assert draws() == expected  # before, both were reseeded to random_state and these draws were seed 0's
    # a whole fit also leaves NumPy's state alone (torch's moves on by the seed each scoring DataLoader draws)
    np.random.seed(123)
    first = mx.tl.fit_crossattomics(mdata, label_key="label", max_epochs=2, random_state=0, progress_bar=False)
    assert float(np.random.rand()) == expected[0]
    proba = first.predict_proba().to_numpy()
    np.random.seed(7)
    torch.manual_seed(7)
    again = mx.tl.fit_crossattomics(mdata, label_key="label", max_epochs=2, random_state=0, progress_bar=False)
    np.testing.assert_array_equal(again.predict_proba().to_numpy(), proba)  # still reproducible under a seed


def test_model_classes_name_missing_setup_and_missing_labels():
    mdata = mx.datasets.synthetic_interaction_mudata(40, n_features={"rna": 10, "methylation": 10, "mirna": 5})
    import pytest

    with pytest.raises(ValueError, match=r"not set up for CrossAttOmics: call mx.models.CrossAttOmics.setup_mudata"):
        mx.models.CrossAttOmics(mdata)
    mdata.obs["label"] = mdata.obs["label"].astype(object)
    mdata.obs.iloc[3, mdata.obs.columns.get_loc("label")] = np.nan
    for cls in (mx.models.CrossAttOmics, mx.models.UnitedNet):
        with pytest.raises(ValueError, match="1 missing labels"):
            cls.setup_mudata(mdata, label_key="label")


def test_train_indices_alone_hold_out_validation_rows_from_them(caplog):
    mdata = mx.datasets.synthetic_interaction_mudata(80, n_features={"rna": 10, "methylation": 10, "mirna": 5})
    mx.models.CrossAttOmics.setup_mudata(mdata, label_key="label")
    model = mx.models.CrossAttOmics(mdata, linear_path=None)
    with caplog.at_level(logging.INFO, logger="multiomix"):
        model.train(max_epochs=2, train_indices=np.arange(60), validation_size=0.25, progress_bar=False)
    assert "validation_loss" in model.history and model.best_epoch_ is not None
    assert "15 of the 60 train_indices rows" in caplog.text
    model = mx.models.CrossAttOmics(mdata, linear_path=None)
    model.train(max_epochs=2, train_indices=np.arange(60), validation_size=0, progress_bar=False)
    assert "validation_loss" not in model.history and model.best_epoch_ is None
    from multiomix.train import resolve_rows

    train, validation, rest = resolve_rows(80, None, np.arange(70, 80), validation_size=0.15, random_state=0)
    assert list(validation) == list(range(70, 80)) and list(train) == list(range(70)) and len(rest) == 0


def test_unitednet_reports_the_epoch_its_plan_restored():
    mdata = mx.datasets.synthetic_interaction_mudata(80, n_features={"rna": 10, "methylation": 10, "mirna": 5})
    model = mx.tl.fit_unitednet(mdata, label_key="label", max_epochs=4, latent_dim=4, hidden=(8,), n_heads=1,
                                progress_bar=False)
    plan_best = model.trainer.lightning_module.best_epoch
    assert isinstance(model.best_epoch_, int) and model.best_epoch_ == plan_best


def test_scoring_methods_take_scvi_tools_adata_keyword():
    import pytest

    mdata = mx.datasets.synthetic_interaction_mudata(60, n_features={"rna": 10, "methylation": 10, "mirna": 5})
    model = mx.tl.fit_crossattomics(mdata, label_key="label", max_epochs=1, n_models=2, progress_bar=False)
    new = mdata[::2].copy()
    for scorer in (model, model[0]):
        for method in ("predict_proba", "get_latent_representation"):
            np.testing.assert_array_equal(np.asarray(getattr(scorer, method)(adata=new)),
                                          np.asarray(getattr(scorer, method)(new)))
        assert scorer.predict(adata=new).equals(scorer.predict(new))
        with pytest.raises(TypeError, match="got the data twice"):
            scorer.predict(new, adata=new)
