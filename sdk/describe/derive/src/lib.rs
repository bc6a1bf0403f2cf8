//! `#[derive(Describe)]`: a compile-time layout description of a `#[repr(C)]` struct, built
//! from `core::mem::offset_of!` and `size_of`, so it cannot drift from what the compiler laid
//! out. Use it through `memzinc-describe`, which re-exports it and defines the types it fills.

use proc_macro::TokenStream;
use proc_macro2::TokenStream as TokenStream2;
use quote::{quote, ToTokens};
use syn::{parse_macro_input, Data, DeriveInput, Fields, Index, Member};

/// Implements `memzinc_describe::Describe` (the layout) and `memzinc_describe::Field` (so the
/// type can be a field of another described type). Only non-generic `#[repr(C)]` structs.
/// A field whose type is not a primitive, pointer, array or described type needs
/// `#[describe(opaque)]`.
#[proc_macro_derive(Describe, attributes(describe))]
pub fn derive_describe(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    match expand(&input) {
        Ok(tokens) => tokens.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

fn is_repr_c(input: &DeriveInput) -> bool {
    let mut found = false;
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("repr")) {
        // `repr(C)`, `repr(C, align(8))`, `repr(C, packed)`: any list that names C.
        let _ = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("C") {
                found = true;
            }
            // Skip the arguments of align(N) / packed(N).
            if meta.input.peek(syn::token::Paren) {
                let content;
                syn::parenthesized!(content in meta.input);
                let _: TokenStream2 = content.parse()?;
            }
            Ok(())
        });
    }
    found
}

fn is_opaque(field: &syn::Field) -> syn::Result<bool> {
    let mut opaque = false;
    for attr in field.attrs.iter().filter(|a| a.path().is_ident("describe")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("opaque") {
                opaque = true;
                Ok(())
            } else {
                Err(meta.error("unknown describe attribute (expected `opaque`)"))
            }
        })?;
    }
    Ok(opaque)
}

fn expand(input: &DeriveInput) -> syn::Result<TokenStream2> {
    let name = &input.ident;
    if !input.generics.params.is_empty() {
        return Err(syn::Error::new_spanned(
            &input.generics,
            "Describe supports only non-generic types",
        ));
    }
    if !is_repr_c(input) {
        return Err(syn::Error::new_spanned(
            name,
            "Describe needs #[repr(C)]: the layout of a Rust-repr type is not stable",
        ));
    }
    let fields = match &input.data {
        Data::Struct(s) => &s.fields,
        _ => return Err(syn::Error::new_spanned(name, "Describe supports only structs")),
    };
    let krate = quote!(::memzinc_describe);
    let members: Vec<(Member, &syn::Field)> = match fields {
        Fields::Named(named) => named
            .named
            .iter()
            .filter_map(|f| f.ident.clone().map(|i| (Member::Named(i), f)))
            .collect(),
        Fields::Unnamed(unnamed) => unnamed
            .unnamed
            .iter()
            .enumerate()
            .map(|(i, f)| (Member::Unnamed(Index::from(i)), f))
            .collect(),
        Fields::Unit => Vec::new(),
    };
    let mut field_layouts = Vec::with_capacity(members.len());
    for (member, field) in &members {
        let ty = &field.ty;
        let field_name = match member {
            Member::Named(i) => i.to_string(),
            Member::Unnamed(i) => i.index.to_string(),
        };
        let type_name = tidy_type_name(&ty.to_token_stream().to_string());
        let (kind, element, count, layout) = if is_opaque(field)? {
            (
                quote!(#krate::Kind::Opaque),
                quote!(#krate::Kind::None),
                quote!(1),
                quote!(::core::option::Option::None),
            )
        } else {
            (
                quote!(<#ty as #krate::Field>::KIND),
                quote!(<#ty as #krate::Field>::ELEMENT_KIND),
                quote!(<#ty as #krate::Field>::COUNT),
                quote!(<#ty as #krate::Field>::NESTED),
            )
        };
        field_layouts.push(quote! {
            #krate::FieldLayout {
                name: #krate::Str::new(#field_name),
                type_name: #krate::Str::new(#type_name),
                offset: ::core::mem::offset_of!(#name, #member),
                size: ::core::mem::size_of::<#ty>(),
                kind: #kind,
                element_kind: #element,
                count: #count,
                layout: #layout,
            }
        });
    }
    let name_str = name.to_string();
    Ok(quote! {
        impl #krate::Describe for #name {
            const LAYOUT: &'static #krate::TypeLayout = &#krate::TypeLayout::new(
                #name_str,
                ::core::mem::size_of::<#name>(),
                ::core::mem::align_of::<#name>(),
                &[#(#field_layouts),*],
            );
        }
        impl #krate::Field for #name {
            const KIND: #krate::Kind = #krate::Kind::Struct;
            const NESTED: ::core::option::Option<&'static #krate::TypeLayout> =
                ::core::option::Option::Some(<#name as #krate::Describe>::LAYOUT);
        }
    })
}

/// `* const Node` → `*const Node`, `[u8 ; 4]` → `[u8; 4]`, `& 'static str` → `&'static str`:
/// the type as a person would write it.
fn tidy_type_name(tokens: &str) -> String {
    let mut out = String::with_capacity(tokens.len());
    let mut chars = tokens.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ' ' => {
                let prev = out.chars().last();
                let next = chars.peek().copied();
                let glue_after_prev = matches!(prev, Some('*' | '&' | '[' | '(' | '<' | '\''));
                let glue_before_next = matches!(next, Some(';' | ',' | ']' | ')' | '>' | '<' | ':'));
                let path_sep = prev == Some(':');
                let after_separator = matches!(prev, Some(';' | ','));
                if after_separator || !(glue_after_prev || glue_before_next || path_sep) {
                    out.push(' ');
                }
            }
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(input: DeriveInput) -> String {
        expand(&input).unwrap_err().to_string()
    }

    #[test]
    fn refuses_what_it_cannot_describe() {
        assert!(error_of(syn::parse_quote! { struct A { a: u32 } }).contains("repr(C)"));
        assert!(error_of(syn::parse_quote! { #[repr(u8)] enum B { X } }).contains("repr(C)"));
        assert!(error_of(syn::parse_quote! { #[repr(C)] enum B { X } }).contains("only structs"));
        assert!(error_of(syn::parse_quote! { #[repr(C)] struct G<T> { t: T } }).contains("non-generic"));
        assert!(error_of(syn::parse_quote! {
            #[repr(C)]
            struct D { #[describe(transparent)] a: u32 }
        })
        .contains("unknown describe attribute"));
        for ok in [
            syn::parse_quote! { #[repr(C)] struct A { a: u32 } },
            syn::parse_quote! { #[repr(C, align(8))] struct A { a: u32 } },
            syn::parse_quote! { #[repr(align(8), C)] struct A(u32, #[describe(opaque)] String); },
        ] {
            expand(&ok).unwrap();
        }
    }

    #[test]
    fn type_names_read_as_written() {
        let name = |ty: syn::Type| tidy_type_name(&ty.to_token_stream().to_string());
        assert_eq!(name(syn::parse_quote!(*const Node)), "*const Node");
        assert_eq!(name(syn::parse_quote!(*mut u8)), "*mut u8");
        assert_eq!(name(syn::parse_quote!([u8; 4])), "[u8; 4]");
        assert_eq!(name(syn::parse_quote!(&'static str)), "&'static str");
        assert_eq!(name(syn::parse_quote!(core::cell::Cell<u32>)), "core::cell::Cell<u32>");
        assert_eq!(name(syn::parse_quote!([[i16; 2]; 3])), "[[i16; 2]; 3]");
    }
}
