//! The attributes of `modkv-plugin-sdk` (use them through it: `modkv_plugin_sdk::route`).
//!
//! ```text
//!   #[route("/hello", method = "GET", stateless)]      struct Hello; impl Plugin for Hello {
//!   fn hello(req: Request) -> impl IntoResponse   ─▶      manifest(): name and version from Cargo.toml,
//!                                                                     the route, stateless
//!                                                         handle_http(): 405 for other methods, else
//!                                                                        hello(req).into_response()
//!                                                     }  export!(Hello);
//!
//!   #[pre_put("limited/")] fn check(put: Put) -> Decision     the same, with a hooked prefix and pre_put
//! ```
//!
//! The plugin type is named after the function in UpperCamelCase (`fn hello` → `Hello`), so a test can
//! call `Hello::manifest()`.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as Tokens};
use quote::{format_ident, quote, quote_spanned};
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{Ident, ItemFn, LitStr, Token};

/// Makes a function `fn(Request) -> impl IntoResponse` a plugin that serves HTTP requests under the
/// given route prefixes.
///
/// Arguments: one or more route prefixes (`"/hello"` serves `/hello` and `/hello/...`), then, in any
/// order, `method = "GET"` (repeatable: other methods get 405 with an `allow` header; GET allows HEAD
/// too) and `stateless` (see `Manifest::stateless`).
#[proc_macro_attribute]
pub fn route(args: TokenStream, item: TokenStream) -> TokenStream {
    expand(Kind::Route, args, item)
}

/// Makes a function `fn(Put) -> Decision` a plugin whose pre-put hook runs for puts under the given key
/// prefixes (`""`: every key). Takes `stateless` too.
#[proc_macro_attribute]
pub fn pre_put(args: TokenStream, item: TokenStream) -> TokenStream {
    expand(Kind::PrePut, args, item)
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Route,
    PrePut,
}

enum Arg {
    Prefix(LitStr),
    Method(LitStr),
    Stateless,
}

impl Parse for Arg {
    fn parse(input: ParseStream) -> syn::Result<Arg> {
        if input.peek(LitStr) {
            return Ok(Arg::Prefix(input.parse()?));
        }
        let ident: Ident = input.parse()?;
        match ident.to_string().as_str() {
            "stateless" => Ok(Arg::Stateless),
            "method" => {
                input.parse::<Token![=]>()?;
                Ok(Arg::Method(input.parse()?))
            }
            _ => Err(syn::Error::new(
                ident.span(),
                "unknown argument: expected a prefix string, `method = \"GET\"` or `stateless`",
            )),
        }
    }
}

fn expand(kind: Kind, args: TokenStream, item: TokenStream) -> TokenStream {
    match try_expand(kind, args.into(), item.into()) {
        Ok(t) => t.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

fn try_expand(kind: Kind, args: Tokens, item: Tokens) -> syn::Result<Tokens> {
    let args = syn::parse::Parser::parse2(Punctuated::<Arg, Token![,]>::parse_terminated, args)?;
    let func: ItemFn = syn::parse2(item)?;
    let (mut prefixes, mut methods, mut stateless) = (Vec::new(), Vec::new(), false);
    for a in args {
        match a {
            Arg::Prefix(p) => prefixes.push(p),
            Arg::Method(m) if kind == Kind::Route => methods.push(m),
            Arg::Method(m) => return Err(syn::Error::new(m.span(), "`method` is for #[route]")),
            Arg::Stateless => stateless = true,
        }
    }
    let what = if kind == Kind::Route {
        "a route prefix, e.g. #[route(\"/hello\")]"
    } else {
        "a key prefix, e.g. #[pre_put(\"limited/\")]"
    };
    if prefixes.is_empty() {
        return Err(syn::Error::new(Span::call_site(), format!("expected {what}")));
    }
    for p in &prefixes {
        if kind == Kind::Route && !p.value().starts_with('/') {
            return Err(syn::Error::new(p.span(), "a route starts with '/'"));
        }
    }
    let sdk = quote!(::modkv_plugin_sdk);
    let name = &func.sig.ident;
    let ty = format_ident!("{}", camel(&name.to_string()), span = name.span());
    let stateless = stateless.then(|| quote!(.stateless()));
    let (registration, hook) = match kind {
        Kind::Route => {
            let methods: Vec<String> = methods.iter().map(|m| m.value().to_ascii_uppercase()).collect();
            let check = (!methods.is_empty()).then(|| {
                quote! {
                    let refused = #sdk::__private::method_not_allowed(&req, &[#(#methods),*]);
                    if let ::core::option::Option::Some(refused) = refused {
                        return refused;
                    }
                }
            });
            let call = quote_spanned!(func.sig.output_span()=> #sdk::IntoResponse::into_response(#name(req)));
            (
                quote!(#(.route(#prefixes))*),
                quote! {
                    fn handle_http(req: #sdk::Request) -> #sdk::Response {
                        #check
                        #call
                    }
                },
            )
        }
        Kind::PrePut => (
            quote!(#(.hook_prefix(#prefixes))*),
            quote! {
                fn pre_put(put: #sdk::Put) -> #sdk::Decision {
                    #name(put)
                }
            },
        ),
    };
    let doc = format!("The plugin `#[{}]` makes of [`{name}`].", if kind == Kind::Route { "route" } else { "pre_put" });
    Ok(quote! {
        #func

        #[doc = #doc]
        pub struct #ty;

        impl #sdk::Plugin for #ty {
            fn manifest() -> #sdk::Manifest {
                #sdk::Manifest::new(::core::env!("CARGO_PKG_NAME"), ::core::env!("CARGO_PKG_VERSION"))
                    #registration
                    #stateless
            }

            #hook
        }

        #sdk::export!(#ty);
    })
}

trait OutputSpan {
    fn output_span(&self) -> Span;
}

impl OutputSpan for syn::Signature {
    fn output_span(&self) -> Span {
        match &self.output {
            syn::ReturnType::Default => self.ident.span(),
            syn::ReturnType::Type(_, ty) => syn::spanned::Spanned::span(&**ty),
        }
    }
}

/// `count_keys` → `CountKeys`.
fn camel(s: &str) -> String {
    s.split('_')
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut c = w.chars();
            c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
        })
        .collect()
}
