//! topk kernel (being written).
