"""Documentation that several functions share, and the decorator that puts it into their docstrings.

What scanpy (``_doc_params``) and scvi-tools (docrep's ``DocstringProcessor``) do: the text of a parameter that
many functions take is written once, here, and a docstring names it on a line of its own as ``%(name)s``.
:func:`fill_doc` replaces each such line by ``DOCS[name]``, indented like the line, when the module is imported,
so ``help()``, IDEs and Sphinx show the whole docstring.
"""

from __future__ import annotations

import re
import textwrap
from typing import TypeVar

__all__ = ["DOCS", "fill_doc"]

_T = TypeVar("_T")
_PLACEHOLDER = re.compile(r"^(?P<indent>[ \t]*)%\((?P<name>\w+)\)s[ \t]*$", re.MULTILINE)


def _text(*parts: str) -> str:
    """Dedent each part and join them, one numpydoc entry (or sentence) after the other."""
    return "\n".join(textwrap.dedent(p).strip("\n") for p in parts)


def fill_doc(obj: _T) -> _T:
    """Replace every line ``%(name)s`` of ``obj``'s docstring by ``DOCS[name]``, indented like that line.

    An unknown name raises a ``KeyError`` when the module is imported, so a typo never reaches the documentation.

    Examples
    --------
    >>> @fill_doc
    ... def plot(show=None, save=None):
    ...     '''Draw.
    ...
    ...     Parameters
    ...     ----------
    ...     %(show_save_figure)s
    ...     '''
    >>> print(plot.__doc__.splitlines()[4])
        show
    """
    if obj.__doc__:
        obj.__doc__ = _PLACEHOLDER.sub(lambda m: textwrap.indent(DOCS[m["name"]], m["indent"]), obj.__doc__)
    return obj


_ACCELERATOR_DEVICES = """
    accelerator, devices
        Lightning accelerator and devices.
"""
_PROGRESS_BAR = """
    progress_bar
        Show a progress bar (default: ``mx.settings.progress_bar``).
"""
_SHOW_SAVE = """
    save
        Write the figure to this path (format from its suffix).
"""

#: Shared text by name; the ``fit_*`` entries are the parameters of the ``tl.fit_*`` functions.
DOCS: dict[str, str] = {
    # tl.fit_* ---------------------------------------------------------------------------------------------------
    "fit_split_key": _text("""
        split_key
            Column of ``mdata.obs`` with ``train``/``validation``/``test``.
    """),
    "fit_test_size": _text("""
        test_size
            Share of the labelled rows held out for testing when there is no split column (0: none).
    """),
    "fit_baseline": _text("""
        baseline
            Also fit the logistic-regression baseline on the same rows and store its test metrics.
    """),
    "fit_n_models": _text("""
        n_models
            Train this many models on the same rows, with seeds ``random_state``, ``random_state + 1``, ...; with
            more than one, the predictions written are the mean of their class probabilities and a
            :class:`~multiomix.models.SeedEnsemble` is returned (``n_models`` times the training time).
    """),
    "fit_random_state": _text("""
        random_state
            Seed (CPU runs are reproducible).
    """),
    "fit_key_added": _text("""
        key_added
            Prefix of every key written.
    """),
    "accelerator_devices": _text(_ACCELERATOR_DEVICES),
    "progress_bar": _text(_PROGRESS_BAR),
    # accelerator, devices, progress_bar and **trainer_kwargs of a fit
    "fit_lightning": _text(_ACCELERATOR_DEVICES, _PROGRESS_BAR, """
        **trainer_kwargs
            Passed to the Lightning trainer (e.g. ``strategy="ddp_notebook"``).
    """),
    # models ---------------------------------------------------------------------------------------------------
    "score_data": _text("""
        mdata
            Data to score (default: the data the model was set up with; ``adata=``, scvi-tools' name, is taken
            too). New data need no label column; their features are matched to the training features by name, per
            modality.
        indices
            Integer rows of ``mdata`` to score (default: all).
        batch_size
            Observations per minibatch.
    """),
    "returns_proba": _text("""
        proba : pandas.DataFrame
            Probabilities, one column per class, indexed by observation name.
    """),
    "returns_prediction": _text("""
        prediction : pandas.Series
            Categorical, indexed by observation name.
    """),
    "returns_latent": _text("""
        latent : numpy.ndarray
            float32, observations x latent width.
    """),
    # pl ---------------------------------------------------------------------------------------------------------
    "ax": _text("""
        ax
            Axes to draw in (default: a new figure).
    """),
    # show, save and return_fig of a plot drawn in one Axes
    "show_save_return": _text("""
        show
            Show the figure; default: when pyplot's backend is interactive and no ``ax`` was given.
    """, _SHOW_SAVE, """
        return_fig
            Return the Figure instead of the Axes.
    """),
    # show and save of a plot that lays out its own figure (it has no ``ax``)
    "show_save_figure": _text("""
        show
            Show the figure; default: when pyplot's backend is interactive.
    """, _SHOW_SAVE),
    # pl.relevance_* ---------------------------------------------------------------------------------------------
    "relevance_health": _text("""
        When the results carry ``health`` (see :func:`multiomix.tl.feature_relevance`), a ``UserWarning`` and
        a red note under the title flag shown groups with fewer than 10 cells, a relative additivity error above
        0.2 and a linear explained path (relevance then is not cell-type specific).
    """),
    "relevance_mdata_key": _text("""
        mdata
            MuData with :func:`multiomix.tl.feature_relevance` results.
        key
            Key in ``mdata.uns``.
    """),
    "relevance_groups": _text("""
        groups
            Groups (rows) to show; default: all, or the ``max_groups`` with most cells.
    """),
    "relevance_max_groups_modality": _text("""
        max_groups
            Most groups shown when ``groups`` is not given (``None``: all).
        modality
            Only features of this modality.
    """),
    # pp ---------------------------------------------------------------------------------------------------------
    # key_added and copy of a transform that writes a layer
    "layer_key_added_copy": _text("""
        key_added
            Layer to write to; ``None`` overwrites ``.X``.
        copy
            Return a modified copy instead of writing in place.
    """),
}


def _ending(parameters: str, returns: str) -> str:
    """Return the last parameters of a docstring, a blank line and its Returns section."""
    return f"{parameters}\n\nReturns\n-------\n{returns}"


# the end of a plot's docstring (its last parameters and what it returns), and of a model's ``translate``
DOCS["plot_axes_end"] = _ending(
    DOCS["show_save_return"], "``None`` when shown; otherwise the Axes, or the Figure with ``return_fig=True``."
)
DOCS["plot_figure_end"] = _ending(
    DOCS["show_save_figure"], "``None`` when shown; otherwise the Figure (it has several panels, so no ``ax``)."
)
DOCS["translate_end"] = _ending(_text("""
    batch_size
        Cells per minibatch (sparse input is densified one minibatch at a time).
"""), "Array ``n_obs x n_target_vars``.")
