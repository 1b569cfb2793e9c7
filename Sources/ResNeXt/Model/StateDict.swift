import Foundation

extension ResNeXt {
    /// Metadata recorded in our files so that `eval` can rebuild the model without options.
    public var stateMetadata: [String: String] {
        [
            "format": "pt", "depth": "\(config.depth)", "cardinality": "\(config.cardinality)",
            "base_channels": "\(config.baseChannels)", "num_classes": "\(config.numClasses)",
        ]
    }

    /// The whole `state_dict`, in PyTorch's order: F32 tensors, I64 `num_batches_tracked`.
    public func stateDictTensors() -> [SafeTensor] {
        store.entries.map { e in
            switch e.kind {
            case .counter:
                return SafeTensor(name: e.name, shape: e.shape, int64s: [store.counters[e.offset]])
            case .parameter, .statistic:
                return SafeTensor(
                    name: e.name, shape: e.shape,
                    values: UnsafeBufferPointer(start: store.pointer(e), count: e.count))
            }
        }
    }

    /// Writes the `state_dict` as safetensors (loads with `load_state_dict(strict=True)` in PyTorch).
    public func saveStateDict(to path: String) throws {
        try SafeTensorsFile.write(stateDictTensors(), metadata: stateMetadata, to: path)
    }

    /// Loads a full `state_dict`. `prefix` is prepended to every name looked up (e.g. "init.").
    /// Every tensor must be present with its exact shape; with `strict`, no other tensor may be.
    public func loadStateDict(_ file: SafeTensorsFile, prefix: String = "", strict: Bool = true) throws {
        for e in store.entries {
            let name = prefix + e.name
            let info = try file.info(name)
            guard info.shape == e.shape || (e.kind == .counter && info.count == 1) else {
                throw ResNeXtError("\(file.path): tensor '\(name)' has shape \(info.shape), the model (\(config)) needs \(e.shape)")
            }
            switch e.kind {
            case .counter:
                store.counters[e.offset] = try file.int64s(name)[0]
            case .parameter, .statistic:
                guard info.dtype == .f32 || info.dtype == .f64 else {
                    throw ResNeXtError("\(file.path): tensor '\(name)' is \(info.dtype.rawValue), F32 was expected")
                }
                let values: [T] = try file.values(name)
                store.pointer(e).update(from: values, count: e.count)
            }
        }
        if strict {
            let known = Set(store.entries.map { prefix + $0.name })
            let extra = file.names.filter { $0.hasPrefix(prefix) && !known.contains($0) }
            if let first = extra.first {
                throw ResNeXtError(
                    "\(file.path): unexpected tensor '\(first)' (\(extra.count) not in \(config)): is the file for another model shape?")
            }
        }
    }

    /// The model shape recorded in a file's metadata, if any.
    public static func recordedConfig(_ file: SafeTensorsFile) -> ResNeXtConfig? {
        guard let d = file.metadata["depth"].flatMap(Int.init), let c = file.metadata["cardinality"].flatMap(Int.init),
            let b = file.metadata["base_channels"].flatMap(Int.init)
        else { return nil }
        return ResNeXtConfig(
            depth: d, cardinality: c, baseChannels: b,
            numClasses: file.metadata["num_classes"].flatMap(Int.init) ?? 10)
    }
}
