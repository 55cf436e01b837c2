//! pca kernel (being written).
